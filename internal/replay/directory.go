package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/pkg/events"
)

// Errors of Directory, for errors.Is.
var (
	// ErrUnknownSource: no baseline is stored under that name: the source
	// does not exist, or it has not completed its first snapshot yet.
	ErrUnknownSource = errors.New("unknown source")
	// ErrBeforeBaseline: the time asked for lies before the source's
	// baseline, its first complete snapshot; nothing is known before it.
	ErrBeforeBaseline = errors.New("no state before the baseline")
)

// DirectoryStats counts what a directory rebuild read.
type DirectoryStats struct {
	// Applied is how many events changed the directory: those of the
	// source stored after the baseline, with a time at or before asOf.
	Applied int
	// Undecodable counts messages on the source's subjects that are not
	// rollcall events, or whose data holds no user; they are skipped, as
	// Replay skips them, and make the rebuild return ErrUndecodable.
	Undecodable int
	// UndecodableSeqs are their stream sequences, the first
	// maxUndecodableSeqs of them.
	UndecodableSeqs []uint64
}

// maxUndecodableSeqs bounds DirectoryStats.UndecodableSeqs: a stream
// full of foreign messages must not fill memory (or an error message)
// with their numbers.
const maxUndecodableSeqs = 10

// Directory rebuilds the directory of source as it was at asOf: every
// user's state then, sorted by id (numerically where ids are numbers).
// asOf zero means now.
//
// It starts from the source's baseline (object <source> in
// rollcall_baselines: the first complete snapshot, which published no
// events) and applies, in stream order, every event of the source stored
// after the baseline whose time is at or before asOf. An event's data.user
// is the user's state after it; a user.retired with reason "removed" takes
// the user out of the directory, and a later user.registered brings it
// back. A user retired by its source's status (VPP) stays listed, retired,
// as the source itself lists it.
//
// Events stored before the baseline are not applied: they belong to an
// earlier seeding (a source re-seeded from scratch), which the newer
// baseline supersedes.
//
// A message that is not a rollcall event (a hand-published test message,
// a bug of an earlier release) is skipped and counted, as Replay does: the
// rebuild goes on, and returns the directory of every event it could read
// with an error wrapping ErrUndecodable that says how many it skipped and
// where. One bad message must not take a source's whole history away.
func Directory(ctx context.Context, js jetstream.JetStream, source string, asOf time.Time) ([]events.User, error) {
	users, _, err := DirectoryWithStats(ctx, js, source, asOf)
	return users, err
}

// DirectoryWithStats is Directory, with what it read. With an error
// wrapping ErrUndecodable the users are the rebuilt directory (without
// what the skipped messages held); with any other error they are nil.
func DirectoryWithStats(ctx context.Context, js jetstream.JetStream, source string, asOf time.Time) ([]events.User, DirectoryStats, error) {
	var stats DirectoryStats
	if !events.ValidSourceName(source) {
		return nil, stats, fmt.Errorf("directory: %w: source %q is not a valid source name", ErrInvalidOptions, source)
	}
	obs, err := js.ObjectStore(ctx, bus.BaselinesBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, stats, fmt.Errorf("directory of %s: %w: object store %s does not exist; no source has completed a first snapshot here", source, ErrUnknownSource, bus.BaselinesBucket)
		}
		return nil, stats, fmt.Errorf("directory of %s: open %s: %w", source, bus.BaselinesBucket, err)
	}
	base, modTime, err := readBaseline(ctx, obs, source)
	if err != nil {
		return nil, stats, err
	}
	if !asOf.IsZero() && asOf.Before(modTime) {
		return nil, stats, fmt.Errorf("directory of %s: %w: its baseline (first complete snapshot) was taken at %s, and %s is earlier; there is no state before the baseline time",
			source, ErrBeforeBaseline, modTime.UTC().Format(time.RFC3339Nano), asOf.UTC().Format(time.RFC3339Nano))
	}
	dir := make(map[string]events.User, len(base))
	for _, u := range base {
		dir[u.ID] = u
	}
	spec := scanSpec{filters: []string{events.SubjectPrefix + source + ".>"}, start: modTime}
	if !asOf.IsZero() {
		spec.stopAfter = asOf.Add(DefaultSkew)
	}
	undecodable := func(seq uint64) {
		stats.Undecodable++
		if len(stats.UndecodableSeqs) < maxUndecodableSeqs {
			stats.UndecodableSeqs = append(stats.UndecodableSeqs, seq)
		}
	}
	_, err = scan(ctx, js, spec, func(msg jetstream.Msg, md *jetstream.MsgMetadata, _ *scanState) error {
		e, err := events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
		if err != nil {
			undecodable(md.Sequence.Stream)
			return nil
		}
		if !asOf.IsZero() && e.Time().After(asOf) {
			return nil
		}
		d, err := events.DecodeData(e)
		if err != nil {
			undecodable(md.Sequence.Stream)
			return nil
		}
		stats.Applied++
		id := e.Subject()
		if d.Reason == events.ReasonRemoved || strings.EqualFold(d.User.Status, events.StatusRemoved) {
			delete(dir, id)
			return nil
		}
		dir[id] = d.User
		return nil
	})
	if err != nil {
		return nil, stats, fmt.Errorf("directory of %s: %w", source, err)
	}
	users := make([]events.User, 0, len(dir))
	for _, u := range dir {
		users = append(users, u)
	}
	slices.SortFunc(users, func(a, b events.User) int { return compareIDs(a.ID, b.ID) })
	if stats.Undecodable > 0 {
		more := ""
		if stats.Undecodable > len(stats.UndecodableSeqs) {
			more = ", …"
		}
		return users, stats, fmt.Errorf("directory of %s: %w: %d skipped, at stream seq %s%s", source, ErrUndecodable, stats.Undecodable, seqList(stats.UndecodableSeqs), more)
	}
	return users, stats, nil
}

// readBaseline reads the baseline object and the time it was stored, from
// one version of the object.
func readBaseline(ctx context.Context, obs jetstream.ObjectStore, source string) ([]events.User, time.Time, error) {
	res, err := obs.Get(ctx, source)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, time.Time{}, fmt.Errorf("directory of %s: %w: no baseline %q in %s (no such source, or it has not completed its first snapshot)",
				source, ErrUnknownSource, source, bus.BaselinesBucket)
		}
		return nil, time.Time{}, fmt.Errorf("directory of %s: read baseline: %w", source, err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("directory of %s: read baseline: %w", source, err)
	}
	b, err := io.ReadAll(res)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("directory of %s: read baseline: %w", source, err)
	}
	// A baseline an earlier release stored may hold secrets in raw.
	if clean, err := events.ScrubRaw(b); err == nil {
		b = clean
	}
	var users []events.User
	if err := json.Unmarshal(b, &users); err != nil {
		return nil, time.Time{}, fmt.Errorf("directory of %s: baseline is not a JSON array of users: %w", source, err)
	}
	return users, baselineTime(info), nil
}

// baselineTime is when a baseline was stored: its object's time, unless
// the poller stored it again without the secrets an earlier release left
// in it (bus.BaselineStored keeps the first time).
func baselineTime(info *jetstream.ObjectInfo) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, info.Metadata[bus.BaselineStored]); err == nil {
		return t
	}
	return info.ModTime
}

// compareIDs orders numeric ids (VPP userId) by value and everything else
// as strings, numbers first.
func compareIDs(a, b string) int {
	na, nb := isDigits(a), isDigits(b)
	switch {
	case na && nb:
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(ta) != len(tb) {
			return len(ta) - len(tb)
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
	case na:
		return -1
	case nb:
		return 1
	}
	return strings.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// WriteUsers writes users as JSON lines, one user per line: what `notifier
// replay --as-of` prints.
func WriteUsers(w io.Writer, users []events.User) error {
	enc := json.NewEncoder(w)
	for _, u := range users {
		if err := enc.Encode(u); err != nil {
			return fmt.Errorf("write user %s: %w", u.ID, err)
		}
	}
	return nil
}
