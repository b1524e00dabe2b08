package poller

import (
	"bytes"
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
// source's events from there and writes to the KV the state they reached,
// before it diffs. The diff then publishes what happened since, the user's
// return included.
//
// The state reached is the KV's with the fields each published event
// changed taken from that event's data.user (never cut, see events.Slim):
// a run that published only the first of a user's events (its role
// change, say) reached only that, and the diff still publishes the rest
// (the e-mail change). An event for a user the KV does not hold, or holds
// as removed, brings the whole user.
func (p *Poller) repair(ctx context.Context, r *run) error {
	if r.st.Publishing == 0 || p.h.Events == nil {
		return nil
	}
	published, err := p.publishedSince(ctx, r.name, r.st.Publishing)
	if err != nil {
		return fmt.Errorf("source %s: read back the events of a run that did not commit: %w", r.name, err)
	}
	var ids []string
	for id := range published {
		ids = append(ids, id)
	}
	r.idx.SortByRevision(ids)
	prev, err := r.users.Records(ctx, ids)
	if err != nil {
		return fmt.Errorf("source %s: read back the events of a run that did not commit: %w", r.name, err)
	}
	var writes []diff.Write
	for _, id := range ids {
		before, known := prev[id]
		reached, ok := reachedState(before.User, known, published[id])
		if !ok || known && reached.Digest() == before.User.Digest() {
			continue
		}
		w := diff.Write{User: reached}
		if known {
			w.Revision = before.Revision
		}
		writes = append(writes, w)
	}
	if len(writes) > 0 {
		if err := r.users.Commit(ctx, writes, r.idx); err != nil {
			r.k.idx = nil
			return fmt.Errorf("source %s: write back the events of a run that did not commit: %w", r.name, err)
		}
		r.log.Warn("an earlier run published events but did not commit them; the state they reached is written now, and what changed since is published as usual",
			"users", len(writes), "events_from_seq", r.st.Publishing)
	}
	return nil
}

// reachedState applies a user's published events, in stream order, to the
// state the KV holds (known) and returns the state they reached; ok is
// false when there is nothing to apply.
func reachedState(kv events.User, known bool, evs []events.Data) (events.User, bool) {
	state, have := kv, known && !strings.EqualFold(kv.Status, events.StatusRemoved)
	for _, d := range evs {
		if !have || d.Previous == nil {
			// A new user, or one back after a removal: the event brings
			// it whole (its raw record too, unless that was cut).
			raw := state.Raw
			state, have = d.User, true
			if len(raw) > 0 && len(d.User.Raw) < len(raw) && bytes.Contains(d.User.Raw, []byte(events.RawCutKey)) {
				state.Raw = raw
			}
			continue
		}
		for _, c := range d.Changes {
			state.CopyField(c.Field, d.User)
		}
	}
	if recreated(evs) {
		// An Apple v2 user's memory of its entries (events.User.Entries)
		// is in no event: the one recorded is from before these events,
		// and kept it would show the retirement and re-creation they
		// already reported as new again. Not known is never a change; a
		// later run records it anew. Events without that pair leave the
		// recorded memory right, and it is kept.
		state.Entries = nil
	}
	return state, have
}

// recreated reports whether evs hold a user's retirement followed by its
// re-creation: an event whose previous state was retired and whose user
// is not.
func recreated(evs []events.Data) bool {
	for _, d := range evs {
		if d.Previous != nil && strings.EqualFold(d.Previous.Status, events.StatusRetired) && !strings.EqualFold(d.User.Status, events.StatusRetired) {
			return true
		}
	}
	return false
}

// publishedSince is the data of the events of source stored from sequence
// from on, per user in stream order.
func (p *Poller) publishedSince(ctx context.Context, source string, from uint64) (map[string][]events.Data, error) {
	filter := events.SubjectPrefix + source + ".>"
	out := map[string][]events.Data{}
	for seq := from; ; {
		m, err := p.h.Events.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
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
		out[d.User.ID] = append(out[d.User.ID], d)
	}
}
