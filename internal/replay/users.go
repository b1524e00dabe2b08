package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/pkg/events"
)

// UserRef is one user of one source.
type UserRef struct {
	Source string
	ID     string
}

func (u UserRef) String() string { return u.Source + "/" + u.ID }

// ErrUnknownUser: no user has that id, e-mail address or user name.
var ErrUnknownUser = errors.New("unknown user")

// ResolveUser finds the users who is: a user id of source (every source
// when source is ""), or else an e-mail address or user name (compared
// without regard to case) that a user has or had. The result is sorted; it
// holds more than one user when an e-mail address or user name is shared
// (or an id exists in several sources); it is an error wrapping
// ErrUnknownUser when nobody matches.
//
// It reads only what the replay user of deployments/nats/accounts.conf
// may read: the event stream's subjects (an id), the events themselves
// (data.user and data.previous hold e-mail and user name) and the
// baselines (users that never changed). The users bucket, which that user
// may not read, is not needed: every user in it is in a baseline or an
// event.
func ResolveUser(ctx context.Context, js jetstream.JetStream, source, who string) ([]UserRef, error) {
	if who == "" {
		return nil, fmt.Errorf("%w: an empty user", ErrInvalidOptions)
	}
	if source != "" && !events.ValidSourceName(source) {
		return nil, fmt.Errorf("%w: source %q is not a valid source name", ErrInvalidOptions, source)
	}
	src := source
	if src == "" {
		src = "*"
	}
	// An id with events: its subjects say so at once.
	subjects, err := streamSubjects(ctx, js, events.SubjectPrefix+src+"."+events.EncodeKey(who)+".>")
	if err != nil {
		return nil, err
	}
	found := map[UserRef]bool{}
	for subj := range subjects {
		if s, _, ok := splitSubject(subj); ok {
			found[UserRef{Source: s, ID: who}] = true
		}
	}
	if len(found) == 0 {
		if err := matchEvents(ctx, js, source, who, found); err != nil {
			return nil, err
		}
		if err := matchBaselines(ctx, js, source, who, found); err != nil {
			return nil, err
		}
	}
	if len(found) == 0 {
		in := "any source"
		if source != "" {
			in = "source " + source
		}
		return nil, fmt.Errorf("%w: no user of %s has the id, e-mail address or user name %q", ErrUnknownUser, in, who)
	}
	out := make([]UserRef, 0, len(found))
	for u := range found {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b UserRef) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return compareIDs(a.ID, b.ID)
	})
	return out, nil
}

// matches reports whether u is who by id, e-mail address or user name.
func matches(u *events.User, who string) bool {
	return u != nil && (u.ID == who || u.Email != "" && strings.EqualFold(u.Email, who) || u.UserName != "" && strings.EqualFold(u.UserName, who))
}

// matchEvents reads the events of source ("" = all) and adds every user
// who is or was who.
func matchEvents(ctx context.Context, js jetstream.JetStream, source, who string, found map[UserRef]bool) error {
	if _, err := js.Stream(ctx, bus.EventsStream); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	spec := scanSpec{}
	if source != "" {
		spec.filters = []string{events.SubjectPrefix + source + ".>"}
	}
	_, err := scan(ctx, js, spec, func(msg jetstream.Msg, _ *jetstream.MsgMetadata, _ *scanState) error {
		e, err := events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
		if err != nil {
			return nil // not an event: Replay reports those
		}
		d, err := events.DecodeData(e)
		if err != nil {
			return nil
		}
		if matches(&d.User, who) || matches(d.Previous, who) {
			found[UserRef{Source: events.SourceName(e), ID: e.Subject()}] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("look up user %q: %w", who, err)
	}
	return nil
}

// matchBaselines adds the users of the baselines (of source, or all) who
// are who.
func matchBaselines(ctx context.Context, js jetstream.JetStream, source, who string, found map[UserRef]bool) error {
	names := []string{source}
	if source == "" {
		var err error
		if names, err = baselineNames(ctx, js); err != nil {
			return err
		}
	}
	obs, err := js.ObjectStore(ctx, bus.BaselinesBucket)
	if err != nil {
		return nil // no baselines: nothing to find in them
	}
	for _, name := range names {
		users, _, err := readBaseline(ctx, obs, name)
		if errors.Is(err, ErrUnknownSource) {
			continue
		}
		if err != nil {
			return err
		}
		for i := range users {
			if matches(&users[i], who) {
				found[UserRef{Source: name, ID: users[i].ID}] = true
			}
		}
	}
	return nil
}

// KnownSources lists the sources this NATS server knows, sorted: those
// with a baseline (every source that completed a first snapshot, so every
// source with users in rollcall_users) and those with events on the
// stream.
func KnownSources(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	names, err := baselineNames(ctx, js)
	if err != nil {
		return nil, err
	}
	subjects, err := streamSubjects(ctx, js, events.SubjectPrefix+">")
	if err != nil {
		return nil, err
	}
	for subj := range subjects {
		if s, _, ok := splitSubject(subj); ok && !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	sort.Strings(names)
	return names, nil
}

// CheckSource returns nil when source is known (it has a baseline or
// events), and otherwise an error wrapping ErrUnknownSource that names the
// known sources.
func CheckSource(ctx context.Context, js jetstream.JetStream, source string) error {
	if obs, err := js.ObjectStore(ctx, bus.BaselinesBucket); err == nil {
		if _, err := obs.GetInfo(ctx, source); err == nil {
			return nil
		}
	}
	subjects, err := streamSubjects(ctx, js, events.SubjectPrefix+source+".>")
	if err != nil {
		return err
	}
	if len(subjects) > 0 {
		return nil
	}
	return UnknownSource(ctx, js, source)
}

// UnknownSource is the error for a source this server does not know: it
// wraps ErrUnknownSource and lists the sources it knows.
func UnknownSource(ctx context.Context, js jetstream.JetStream, source string) error {
	known, err := KnownSources(ctx, js)
	if err != nil {
		return fmt.Errorf("%w %q (and listing the known ones failed: %v)", ErrUnknownSource, source, err)
	}
	if len(known) == 0 {
		return fmt.Errorf("%w %q: no source has completed a first snapshot on this NATS server yet", ErrUnknownSource, source)
	}
	return fmt.Errorf("%w %q: known sources are %s", ErrUnknownSource, source, strings.Join(known, ", "))
}

// baselineNames lists the objects of rollcall_baselines: one per source.
func baselineNames(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	obs, err := js.ObjectStore(ctx, bus.BaselinesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", bus.BaselinesBucket, err)
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bus.BaselinesBucket, err)
	}
	var names []string
	for _, in := range infos {
		if !in.Deleted {
			names = append(names, in.Name)
		}
	}
	return names, nil
}

// streamSubjects lists the subjects of the event stream matching filter,
// with their message counts (the server's subject index; no message is
// read). No stream: none.
func streamSubjects(ctx context.Context, js jetstream.JetStream, filter string) (map[string]uint64, error) {
	s, err := js.Stream(ctx, bus.EventsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.EventsStream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("stream %s: subjects %s: %w", bus.EventsStream, filter, err)
	}
	return info.State.Subjects, nil
}

// splitSubject reads rollcall.events.<source>.<userkey>.<type>.
func splitSubject(subj string) (source, key string, ok bool) {
	rest, ok := strings.CutPrefix(subj, events.SubjectPrefix)
	if !ok {
		return "", "", false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) < 3 {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// WriteUserTable writes users as an aligned table a person reads: id,
// e-mail address, user name, name, status, role, organisation and client
// user id, each column only when some user has a value in it. Values are
// shown as the console's text lines show them (quoted when not plain
// text, cut when long).
func WriteUserTable(w io.Writer, users []events.User) error {
	cols := []struct {
		head string
		get  func(events.User) string
	}{
		{"ID", func(u events.User) string { return u.ID }},
		{"EMAIL", func(u events.User) string { return u.Email }},
		{"USER NAME", func(u events.User) string { return u.UserName }},
		{"NAME", func(u events.User) string { return strings.TrimSpace(u.FirstName + " " + u.LastName) }},
		{"STATUS", func(u events.User) string { return strings.ToLower(u.Status) }},
		{"ROLE", func(u events.User) string { return u.Role }},
		{"ORGANIZATION", func(u events.User) string { return u.OrganizationID }},
		{"CLIENT USER ID", func(u events.User) string { return u.ClientUserID }},
	}
	var shown []int
	for i, c := range cols {
		if c.head == "ID" || c.head == "STATUS" || slices.ContainsFunc(users, func(u events.User) bool { return c.get(u) != "" }) {
			shown = append(shown, i)
		}
	}
	rows := make([][]string, 0, len(users)+1)
	head := make([]string, len(shown))
	for j, i := range shown {
		head[j] = cols[i].head
	}
	rows = append(rows, head)
	for _, u := range users {
		row := make([]string, len(shown))
		for j, i := range shown {
			row[j] = "-"
			if v := cols[i].get(u); v != "" {
				row[j] = console.Cell(v)
			}
		}
		rows = append(rows, row)
	}
	// Widths in runes, not bytes: tabwriter would misalign é and →.
	width := make([]int, len(shown))
	for _, r := range rows {
		for j, c := range r {
			width[j] = max(width[j], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for j, c := range r {
			b.WriteString(c)
			if j < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[j]-len([]rune(c))+2))
			}
		}
		b.WriteByte('\n')
		if b.Len() > 64<<10 {
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
