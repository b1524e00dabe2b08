package state

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// Index is what a poller keeps in memory of one source's users between
// runs: per user its KV revision, its fingerprint and whether it is gone,
// some 60–130 bytes instead of its whole record. A run compares the
// snapshot with it (diff.Scan) and reads from the KV only the records of
// the users that changed (Users.Records).
//
// The index stays valid as long as this poller is the only writer of the
// source's keys: Users.Valid checks that nothing was written to them after
// the last write the index knows of, and the poller loads the index afresh
// when something was (another replica took the source over meanwhile, an
// operator edited the bucket) or when a commit failed half-way.
type Index struct {
	mu      sync.Mutex
	slot    map[string]int32 // user id → its position in ents and ids
	ents    []entry
	ids     []string
	marks   uint32 // the current scan's mark (see Mark)
	lastSeq uint64 // the revision (stream sequence) of the last write to the source's keys
}

// entry packs diff.Entry into 32 bytes: the revision in the low 62 bits of
// rev, the diff.Gone state in its top two, and the mark of the last scan
// that listed the user.
type entry struct {
	digest events.Digest
	rev    uint64
	mark   uint32
}

const goneShift = 62

func pack(rev uint64, d events.Digest, g diff.Gone) entry {
	return entry{digest: d, rev: rev&(1<<goneShift-1) | uint64(g)<<goneShift}
}

func (e entry) unpack() diff.Entry {
	return diff.Entry{Revision: e.rev & (1<<goneShift - 1), Digest: e.digest, Gone: e.gone()}
}

func (e entry) gone() diff.Gone { return diff.Gone(e.rev >> goneShift) }

// NewIndex returns an empty index with room for n users.
func NewIndex(n int) *Index {
	return &Index{slot: make(map[string]int32, n), ents: make([]entry, 0, n), ids: make([]string, 0, n)}
}

// Len is the number of users (tombstones included).
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.ents)
}

// Lookup returns what the index knows of user id.
func (x *Index) Lookup(id string) (diff.Entry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.slot[id]
	if !ok {
		return diff.Entry{}, false
	}
	return x.ents[i].unpack(), true
}

// Range calls yield for every user until it returns false. yield must not
// call the index.
func (x *Index) Range(yield func(id string, gone diff.Gone) bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, e := range x.ents {
		if !yield(x.ids[i], e.gone()) {
			return
		}
	}
}

// StartMarks begins a scan (diff.Marker): Mark remembers which users the
// snapshot lists in the entries themselves, so that a scan of a million
// users needs no set of a million ids beside the index.
func (x *Index) StartMarks() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.marks++
	if x.marks == 0 { // wrapped: clear the old marks
		for i := range x.ents {
			x.ents[i].mark = 0
		}
		x.marks = 1
	}
}

// Mark looks user id up and marks it as listed, reporting whether it was
// already marked since StartMarks.
func (x *Index) Mark(id string) (e diff.Entry, known, again bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.slot[id]
	if !ok {
		return diff.Entry{}, false, false
	}
	p := &x.ents[i]
	again = p.mark == x.marks
	p.mark = x.marks
	return p.unpack(), true, again
}

// RangeMarks calls yield for every user, with whether it was marked since
// StartMarks, until yield returns false. yield must not call the index.
func (x *Index) RangeMarks(yield func(id string, gone diff.Gone, marked bool) bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, e := range x.ents {
		if !yield(x.ids[i], e.gone(), e.mark == x.marks) {
			return
		}
	}
}

// LastSeq is the stream sequence of the last write to the source's keys
// the index knows of.
func (x *Index) LastSeq() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lastSeq
}

// SortByRevision orders ids (users the index knows) by their KV revision,
// the order their records lie in the bucket's stream. Reading them in that
// order, a large bucket's server loads each block of the stream once
// rather than once per record: at a million users, reading 10,000
// changed records in random order cost the server over a second.
func (x *Index) SortByRevision(ids []string) {
	revs := make(map[string]uint64, len(ids))
	x.mu.Lock()
	for _, id := range ids {
		if i, ok := x.slot[id]; ok {
			revs[id] = x.ents[i].rev & (1<<goneShift - 1)
		}
	}
	x.mu.Unlock()
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(revs[a], revs[b]) })
}

// set records that user id is u at revision rev.
func (x *Index) set(id string, rev uint64, d events.Digest, g diff.Gone) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.put(id, pack(rev, d, g))
	x.lastSeq = max(x.lastSeq, rev)
}

// put stores e for id; x.mu must be held or x not yet shared.
func (x *Index) put(id string, e entry) {
	if i, ok := x.slot[id]; ok {
		e.mark = x.ents[i].mark
		x.ents[i] = e
		return
	}
	// Snapshot ids are substrings of decoded pages and keys of messages;
	// a copy keeps them from pinning those.
	id = strings.Clone(id)
	x.slot[id] = int32(len(x.ents))
	x.ents = append(x.ents, e)
	x.ids = append(x.ids, id)
}

var _ diff.Marker = (*Index)(nil)

// LoadIndex reads every current key of the source: the revision, the
// stored fingerprint and the status of each, not the records themselves.
func (u *Users) LoadIndex(ctx context.Context) (*Index, error) {
	w, err := u.kv.Watch(ctx, u.source+".>")
	if err != nil {
		return nil, fmt.Errorf("load state of %s: %w", u.source, err)
	}
	defer w.Stop()
	var x *Index
	prefix := len(u.source) + 1
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load state of %s: %w", u.source, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("load state of %s: watcher closed", u.source)
			}
			if x == nil {
				// Size the map once, from what the watch has left to
				// deliver: growing it step by step through a million
				// users costs more than the watch.
				n := 0
				if e != nil {
					n = int(e.Delta()) + 1
				}
				x = NewIndex(n)
			}
			if e == nil { // the initial values are all delivered
				return x, nil
			}
			if e.Operation() != jetstream.KeyValuePut {
				// A deleted key is not a user, but its marker is the
				// last write Valid will find.
				x.lastSeq = max(x.lastSeq, e.Revision())
				continue
			}
			id, err := events.DecodeKey(e.Key()[prefix:])
			if err != nil {
				return nil, fmt.Errorf("load state of %s: key %s: %w", u.source, e.Key(), err)
			}
			d, g, err := scanRecord(e.Value())
			if err != nil {
				return nil, fmt.Errorf("load state of %s: key %s: %w", u.source, e.Key(), err)
			}
			x.put(id, pack(e.Revision(), d, g))
			x.lastSeq = max(x.lastSeq, e.Revision())
		}
	}
}

// Valid reports whether x still describes the source's keys: whether
// nothing was written to them after the last write x knows of. It asks the
// server how many such writes there are, with a watch from that revision
// on that reads no value.
func (u *Users) Valid(ctx context.Context, x *Index) (bool, error) {
	w, err := u.kv.Watch(ctx, u.source+".>", jetstream.IncludeHistory(), jetstream.MetaOnly(), jetstream.ResumeFromRevision(x.LastSeq()+1))
	if err != nil {
		return false, fmt.Errorf("check state of %s: %w", u.source, err)
	}
	defer w.Stop()
	select {
	case e, ok := <-w.Updates():
		if !ok {
			return false, fmt.Errorf("check state of %s: watcher closed", u.source)
		}
		// nil: nothing pending, the initial values are all delivered.
		return e == nil, nil
	case <-ctx.Done():
		return false, fmt.Errorf("check state of %s: %w", u.source, ctx.Err())
	}
}

// Records reads the records of ids, several at a time. An id without a
// key (or whose key was deleted) is left out of the result.
func (u *Users) Records(ctx context.Context, ids []string) (map[string]diff.Prev, error) {
	out := make(map[string]diff.Prev, len(ids))
	var mu sync.Mutex
	err := u.each(ctx, len(ids), func(ctx context.Context, i int) error {
		key := events.StateKey(u.source, ids[i])
		e, err := u.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read state of %s: %w", key, err)
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return fmt.Errorf("read state of %s: %w", key, err)
		}
		mu.Lock()
		out[ids[i]] = diff.Prev{User: r.User, Revision: e.Revision()}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Commit is Apply that also records every write in x. After an error x no
// longer describes the KV: the caller must load it again.
//
// The writes go out in the order of the revisions they replace, for the
// reason Index.SortByRevision gives: the server checks each against the
// key's last revision, which it finds in the block that holds it.
func (u *Users) Commit(ctx context.Context, writes []diff.Write, x *Index) error {
	order := make([]int, len(writes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(writes[a].Revision, writes[b].Revision) })
	return u.each(ctx, len(writes), func(ctx context.Context, i int) error {
		w := writes[order[i]]
		d := w.User.Digest()
		rev, err := u.write(ctx, w, d)
		if err != nil {
			return err
		}
		x.set(w.User.ID, rev, d, diff.GoneOf(w.User.Status))
		return nil
	})
}
