package poller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// repair is the repair stage. A run that published events and then failed
// before committing them (a crash, a lost connection) left its events on
// the stream and the users' previous state in the KV. If the directory has
// not changed since, the next run publishes the same events again (the
// stream drops them as duplicates) and commits them. If it has — a user
// whose retirement was published is back — nothing would ever correct the
// trail, whose last word on that user would stay "retired". So a run marks
// where its events start (state.Source.Publishing) before it publishes, and
// its commit clears the mark; the next run that finds the mark reads the
// source's events from there and, for every user whose last event differs
// from the KV, writes the state that event carries before it diffs. The
// diff then publishes what happened since, the user's return included.
func (p *Poller) repair(ctx context.Context, r *run) error {
	if r.st.Publishing == 0 || p.h.Events == nil {
		return nil
	}
	last, err := p.publishedSince(ctx, r.name, r.st.Publishing)
	if err != nil {
		return fmt.Errorf("source %s: read back the events of a run that did not commit: %w", r.name, err)
	}
	var writes []diff.Write
	for _, u := range last {
		e, known := r.idx.Lookup(u.ID)
		if known && e.Digest == u.Digest() {
			continue
		}
		if slimmed(u) {
			// Its event was cut to fit; its whole state is not on the
			// stream. The rerun republishes it if it still holds.
			continue
		}
		w := diff.Write{User: u}
		if known {
			w.Revision = e.Revision
		}
		writes = append(writes, w)
	}
	if len(writes) > 0 {
		if err := r.users.Commit(ctx, writes, r.idx); err != nil {
			r.k.idx = nil
			return fmt.Errorf("source %s: write back the events of a run that did not commit: %w", r.name, err)
		}
		r.log.Warn("an earlier run published events but did not commit them; their users' state is written now, and what changed since is published as usual",
			"users", len(writes), "events_from_seq", r.st.Publishing)
	}
	return nil
}

// publishedSince is the last user state of each user of source in the
// events stored from sequence from on.
func (p *Poller) publishedSince(ctx context.Context, source string, from uint64) (map[string]events.User, error) {
	filter := events.SubjectPrefix + source + ".>"
	last := map[string]events.User{}
	for seq := from; ; {
		m, err := p.h.Events.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return last, nil
		}
		if err != nil {
			return nil, err
		}
		seq = m.Sequence + 1
		e, err := events.FromHeaders(events.Headers(m.Header), m.Data)
		if err != nil {
			continue // not an event of ours: nothing to write back
		}
		d, err := events.DecodeData(e)
		if err != nil || d.User.ID == "" {
			continue
		}
		last[d.User.ID] = d.User
	}
}

// slimmed reports whether u comes from an event events.Slim cut.
func slimmed(u events.User) bool {
	for _, f := range []string{u.Email, u.UserName, u.FirstName, u.LastName, u.Role, u.OrganizationID, u.ClientUserID} {
		if len(f) > events.SlimFieldBytes && strings.Contains(f[events.SlimFieldBytes:], "…[cut: ") {
			return true
		}
	}
	return false
}
