package simulation

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
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// message is one event on the stream.
type message struct {
	seq    uint64
	at     time.Time
	id     string
	typ    string
	key    string // "<source> <user id>"
	user   events.User
	reason string
}

// observation is everything the pipeline left behind.
type observation struct {
	stream      []message
	poison      []uint64               // sequences of stream messages that are not events
	kv          map[string]events.User // by key
	seeds       map[string]events.User // the baselines' users, by key
	deadLetters map[string]bool        // event ids
	deadSeqs    map[uint64]bool        // stream sequences
	deliveries  []delivery
	history     map[string][]record
	runs        []runObs
}

func (w *world) observe(ctx context.Context) (observation, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o := observation{deliveries: w.rcv.deliveries(), history: w.dir.snapshotHistory(), deadLetters: map[string]bool{}, deadSeqs: map[uint64]bool{}}
	w.mu.Lock()
	o.runs = slices.Clone(w.runs)
	w.mu.Unlock()
	var err error
	if o.stream, o.poison, err = w.readStream(ctx); err != nil {
		return o, err
	}
	if o.kv, err = w.readKV(ctx); err != nil {
		return o, err
	}
	if o.seeds, err = w.readSeeds(ctx); err != nil {
		return o, err
	}
	dls, err := deadletter.List(ctx, w.obsJS, "")
	if err != nil {
		return o, err
	}
	for _, d := range dls {
		o.deadLetters[d.EventID()] = true
		o.deadSeqs[d.StreamSeq] = true
	}
	return o, nil
}

// readStream reads the events on the stream, and the sequences of the
// messages that are not events (the schedule's poison).
func (w *world) readStream(ctx context.Context) ([]message, []uint64, error) {
	s, err := w.obsJS.Stream(ctx, bus.EventsStream)
	if err != nil {
		return nil, nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []message
	var poison []uint64
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, nil, fmt.Errorf("stream message %d: %w", seq, err)
		}
		e, err := events.FromHeaders(events.Headers(m.Header), m.Data)
		if err != nil {
			poison = append(poison, seq)
			continue
		}
		d, err := events.DecodeData(e)
		if err != nil {
			return nil, nil, fmt.Errorf("stream message %d: %w", seq, err)
		}
		out = append(out, message{seq: seq, at: m.Time, id: e.ID(), typ: e.Type(), key: key(d.User.Source, d.User.ID), user: d.User, reason: d.Reason})
	}
	return out, poison, nil
}

func (w *world) readKV(ctx context.Context) (map[string]events.User, error) {
	kv, err := w.obsJS.KeyValue(ctx, bus.UsersBucket)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]events.User{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("users bucket key %s: %w", k, err)
		}
		var r state.Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, fmt.Errorf("users bucket key %s: %w", k, err)
		}
		out[key(r.User.Source, r.User.ID)] = r.User
	}
	return out, nil
}

func (w *world) readSeeds(ctx context.Context) (map[string]events.User, error) {
	obs, err := w.obsJS.ObjectStore(ctx, bus.BaselinesBucket)
	if err != nil {
		return nil, err
	}
	out := map[string]events.User{}
	for _, src := range []string{vppSource, vpp2Source, veeamSource} {
		r, err := obs.Get(ctx, src)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return nil, err
		}
		var users []events.User
		if err := json.Unmarshal(b, &users); err != nil {
			return nil, fmt.Errorf("baseline %s: %w", src, err)
		}
		for _, u := range users {
			out[key(u.Source, u.ID)] = u
		}
	}
	return out, nil
}

// kvMismatches compares the users bucket with the directory: every user
// present with its tracked fields, and every other key gone (a tombstone,
// or for VPP a retired user who left the listing).
func kvMismatches(kv, dir map[string]events.User) []string {
	var bad []string
	for k, u := range dir {
		got, ok := kv[k]
		switch {
		case !ok:
			bad = append(bad, k+" missing")
		case got.Digest() != u.Digest():
			bad = append(bad, fmt.Sprintf("%s is %s, directory %s", k, brief(got), brief(u)))
		}
	}
	for k, u := range kv {
		if _, ok := dir[k]; ok {
			continue
		}
		if st := strings.ToLower(u.Status); st != events.StatusRemoved && !(events.AppleKind(u.SourceKind) && st == events.StatusRetired) {
			bad = append(bad, fmt.Sprintf("%s is gone from the directory but %q in the bucket", k, u.Status))
		}
	}
	return bad
}

func brief(u events.User) string {
	return fmt.Sprintf("%s/%s/%s", u.Status, u.Role, u.Email)
}

// oracle checks every guarantee against what the pipeline did.
func (w *world) oracle(o observation) []string {
	var v []string
	v = append(v, noFalseRemoval(o)...)
	v = append(v, noDuplicateIDs(o)...)
	v = append(v, everyChangePublished(o, &w.checkedRuns)...)
	v = append(v, lastEventIsState(o)...)
	v = append(v, deliveredInOrder(o)...)
	for _, b := range kvMismatches(o.kv, w.dir.current()) {
		v = append(v, "users bucket once quiet: "+b)
	}
	return v
}

// noFalseRemoval: a user is retired for its absence only after it really
// left. Each removal event of a user must match a distinct deletion of
// that user made before the event was stored, and the user must have been
// absent at some moment of the run that published it: between the start of
// the source's latest listing before the event and the event. (Without
// run observations, from a poller process, only the first part is checked.)
func noFalseRemoval(o observation) []string {
	var v []string
	used := map[string]int{} // deletions of a key matched so far
	for _, m := range o.stream {
		if m.typ != events.TypeRetired || m.reason != events.ReasonRemoved {
			continue
		}
		recs := o.history[m.key]
		var dels []time.Time
		for _, r := range recs {
			if !r.present {
				dels = append(dels, r.at)
			}
		}
		n := used[m.key]
		if n >= len(dels) || !dels[n].Before(m.at) {
			v = append(v, fmt.Sprintf("false removal: %s retired (stream seq %d, %s) but %s", m.key, m.seq, m.at.Format("15:04:05.000"), deletionsSaid(dels, n)))
			continue
		}
		used[m.key] = n + 1
		source, _, _ := strings.Cut(m.key, " ")
		if from, ok := lastListingBefore(o.runs, source, m.at); ok && !absentDuring(recs, from, m.at) {
			v = append(v, fmt.Sprintf("false removal: %s retired (stream seq %d, %s) but present all through the run that retired it (listing from %s)",
				m.key, m.seq, m.at.Format("15:04:05.000"), from.Format("15:04:05.000")))
		}
	}
	return v
}

// lastListingBefore is the start of the source's latest listing that began
// before t.
func lastListingBefore(runs []runObs, source string, t time.Time) (time.Time, bool) {
	var best time.Time
	for _, r := range runs {
		if r.source == source && r.start.Before(t) && r.start.After(best) {
			best = r.start
		}
	}
	return best, !best.IsZero()
}

// absentDuring reports whether the user of recs was absent at some moment
// of [from, to].
func absentDuring(recs []record, from, to time.Time) bool {
	present := false
	for _, r := range recs {
		if r.at.After(to) {
			break
		}
		if r.at.After(from) && !r.present {
			return true
		}
		present = r.present
	}
	return !present
}

func deletionsSaid(dels []time.Time, n int) string {
	if len(dels) == 0 {
		return "it was never deleted"
	}
	return fmt.Sprintf("only %d deletions (the %d-th removal has none before it)", len(dels), n+1)
}

// noDuplicateIDs: JetStream's de-duplication holds; no event id twice.
func noDuplicateIDs(o observation) []string {
	var v []string
	seen := map[string]uint64{}
	for _, m := range o.stream {
		if s, dup := seen[m.id]; dup {
			v = append(v, fmt.Sprintf("event id %s twice on the stream (seq %d and %d)", m.id, s, m.seq))
		}
		seen[m.id] = m.seq
	}
	return v
}

// everyChangePublished: after a committed complete run, what the stream
// says of each user is what the run listed. For every such run, and every
// user whose state held, present, through the whole listing, the user's
// last event stored before the source's next listing began must carry that
// state (or, with no event, the user's seed must). Runs during which a user
// of the same source was deleted are left out: offset paging may skip a
// present user then, and the run keeps that user's state until a later one
// lists it (which this check then holds to account).
func everyChangePublished(o observation, checked *int) []string {
	type missed struct {
		first runObs
		runs  int
		user  events.User
		said  string
	}
	misses := map[string]*missed{} // "<key> <digest>" → the runs that missed it
	var order []string
	for _, run := range o.runs {
		if !run.complete || !run.committed || deletedDuring(o.history, run) {
			continue
		}
		*checked++
		next := nextListing(o.runs, run)
		for k, recs := range o.history {
			if !strings.HasPrefix(k, run.source+" ") {
				continue
			}
			st, ok := heldThrough(recs, run.start, run.end)
			if !ok || !st.present {
				continue
			}
			d := st.user.Digest()
			said, ok := lastSaid(o, k, next)
			if ok && said.Digest() == d {
				continue
			}
			id := k + " " + d.String()
			if misses[id] == nil {
				misses[id] = &missed{first: run, user: st.user, said: "no event and no seed"}
				if ok {
					misses[id].said = brief(said)
				}
				order = append(order, id)
			}
			misses[id].runs++
		}
	}
	var v []string
	for _, id := range order {
		m := misses[id]
		v = append(v, fmt.Sprintf("change not published: %s was %s through %d complete runs (the first listed %s–%s), but the stream says %s",
			strings.Join(strings.Fields(id)[:2], " "), brief(m.user), m.runs, m.first.start.Format("15:04:05.000"), m.first.end.Format("15:04:05.000"), m.said))
	}
	return v
}

// nextListing is when the source's first listing after run began (zero:
// none).
func nextListing(runs []runObs, run runObs) time.Time {
	var next time.Time
	for _, r := range runs {
		if r.source == run.source && r.start.After(run.start) && (next.IsZero() || r.start.Before(next)) {
			next = r.start
		}
	}
	return next
}

// lastSaid is the state the stream gave user key last before t (zero:
// ever), or its seed when no event came before.
func lastSaid(o observation, key string, t time.Time) (events.User, bool) {
	var last events.User
	found := false
	for _, m := range o.stream {
		if m.key == key && (t.IsZero() || m.at.Before(t)) {
			last, found = m.user, true
		}
	}
	if found {
		return last, true
	}
	seed, ok := o.seeds[key]
	return seed, ok
}

func deletedDuring(h map[string][]record, run runObs) bool {
	for k, recs := range h {
		if !strings.HasPrefix(k, run.source+" ") {
			continue
		}
		for _, r := range recs {
			if !r.present && !r.at.Before(run.start) && !r.at.After(run.end) {
				return true
			}
		}
	}
	return false
}

// heldThrough returns the record in force over [from, to], if no change
// happened in between.
func heldThrough(recs []record, from, to time.Time) (record, bool) {
	var cur record
	found := false
	for _, r := range recs {
		if r.at.After(to) {
			break
		}
		if r.at.After(from) {
			return record{}, false // changed during the listing
		}
		cur, found = r, true
	}
	return cur, found
}

// lastEventIsState: no state written without its event. Each user's last
// event on the stream carries the state the bucket holds (or, with no
// event, the bucket holds the seed).
func lastEventIsState(o observation) []string {
	last := map[string]events.User{}
	for _, m := range o.stream {
		last[m.key] = m.user
	}
	var v []string
	for k, u := range o.kv {
		e, ok := last[k]
		if !ok {
			seed, seeded := o.seeds[k]
			if !seeded || seed.Digest() != u.Digest() {
				v = append(v, fmt.Sprintf("state without an event: %s is %s in the bucket and no event says so", k, brief(u)))
			}
			continue
		}
		if e.Digest() != u.Digest() {
			v = append(v, fmt.Sprintf("state without an event: %s is %s in the bucket, its last event says %s", k, brief(u), brief(e)))
		}
	}
	return v
}

// deliveredInOrder: the sink got every event, or it is a dead letter; and
// each user's events arrived (first deliveries) in stream order.
func deliveredInOrder(o observation) []string {
	firstAt := map[string]int{} // event id → index of its first delivery
	for i, d := range o.deliveries {
		if _, ok := firstAt[d.id]; !ok {
			firstAt[d.id] = i
		}
	}
	var v []string
	lastOf := map[string]int{} // user key → index of the first delivery of its latest delivered event
	lastID := map[string]string{}
	for _, m := range o.stream {
		i, delivered := firstAt[m.id]
		if !delivered {
			if !o.deadLetters[m.id] {
				v = append(v, fmt.Sprintf("event %s (%s %s, seq %d) neither delivered nor dead-lettered", m.id, m.typ, m.key, m.seq))
			}
			continue
		}
		if prev, ok := lastOf[m.key]; ok && i < prev {
			v = append(v, fmt.Sprintf("out of order: %s got event %s (seq %d) before %s", m.key, m.id, m.seq, lastID[m.key]))
		}
		lastOf[m.key], lastID[m.key] = i, m.id
	}
	for _, seq := range o.poison {
		if !o.deadSeqs[seq] {
			v = append(v, fmt.Sprintf("the message at stream seq %d is not an event and was not dead-lettered", seq))
		}
	}
	ids := map[string]bool{}
	for _, m := range o.stream {
		ids[m.id] = true
	}
	for _, d := range o.deliveries {
		if !ids[d.id] {
			v = append(v, fmt.Sprintf("delivered event %s is not on the stream", d.id))
			ids[d.id] = true
		}
	}
	return v
}
