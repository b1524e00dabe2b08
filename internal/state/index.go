package state

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// Index is what a poller keeps in memory of one source's users between
// runs: per user its KV revision, its fingerprint and whether it is gone,
// about 70 bytes plus the id's own instead of its whole record (idTable
// says how the ids are kept). A run compares the
// snapshot with it (diff.Scan) and reads from the KV only the records of
// the users that changed (Users.Records).
//
// The index stays valid as long as this poller is the only writer of the
// source's keys: Users.Valid proves that every write to them since the
// last check was one of this index's own, and the poller loads the index
// afresh when one was not (another replica took the source over meanwhile,
// an operator edited the bucket) or when a commit failed half-way.
type Index struct {
	mu      sync.Mutex
	ids     idTable // user id → its position in ents
	ents    []entry
	marks   uint32 // the current scan's mark (see Mark)
	lastSeq uint64 // the revision (stream sequence) of the last write to the source's keys
	// checked is the stream sequence up to which Valid has proved the
	// index matches the bucket; own lists the revisions of the writes the
	// index made since (see set), which Valid expects to find after it
	// and nothing else.
	checked uint64
	own     []uint64
	// markers counts the source's keys whose last write is a delete or
	// purge marker, as loaded: with the users, what Valid expects to count.
	markers int
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
	return &Index{ids: newIDTable(n), ents: make([]entry, 0, n)}
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
	i, ok := x.ids.find(id)
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
		if !yield(x.ids.id(int32(i)), e.gone()) {
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
	i, ok := x.ids.find(id)
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
		if !yield(x.ids.id(int32(i)), e.gone(), e.mark == x.marks) {
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

// unchecked returns where Valid must start looking and, sorted, the
// revisions of the index's own writes since the last check.
func (x *Index) unchecked() (from uint64, own []uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	own = slices.Clone(x.own)
	slices.Sort(own)
	return x.checked + 1, own
}

// checkedThrough records that the bucket matches the index up to seq.
func (x *Index) checkedThrough(seq uint64, own int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.checked = max(x.checked, seq)
	x.own = x.own[own:]
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
		if i, ok := x.ids.find(id); ok {
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
	x.own = append(x.own, rev)
}

// put stores e for id; x.mu must be held or x not yet shared.
func (x *Index) put(id string, e entry) {
	if i, ok := x.ids.find(id); ok {
		e.mark = x.ents[i].mark
		x.ents[i] = e
		return
	}
	// The table copies the id: snapshot ids are substrings of decoded
	// pages and keys of messages, which it must not pin.
	x.ids.add(id)
	x.ents = append(x.ents, e)
}

var _ diff.Marker = (*Index)(nil)

// LoadIndex reads every current key of the source: the revision, the
// stored fingerprint and the status of each, not the records themselves.
// Records that a release before key hashing stored under the full
// reversible key of a long id are moved to the hashed key first.
func (u *Users) LoadIndex(ctx context.Context) (*Index, error) {
	// A pass mends what it found; the next one loads the mended bucket and
	// checks it again (a record moved meanwhile by another writer is found
	// by it). Two passes mend everything an earlier release left.
	for pass := 1; ; pass++ {
		x, old, err := u.loadIndex(ctx)
		if err != nil || len(old.keys) == 0 && len(old.secrets) == 0 {
			return x, err
		}
		if pass == maxMendPasses {
			return nil, fmt.Errorf("load state of %s: %d records still to move to hashed keys and %d still holding secrets after %d passes",
				u.source, len(old.keys), len(old.secrets), pass)
		}
		if err := u.migrate(ctx, old.keys); err != nil {
			return nil, err
		}
		if err := u.scrub(ctx, old.secrets); err != nil {
			return nil, err
		}
	}
}

// maxMendPasses bounds LoadIndex's passes over a bucket it keeps finding
// to mend: another writer putting legacy records back as fast.
const maxMendPasses = 4

// stale is what an earlier release left in the bucket for LoadIndex to
// mend.
type stale struct {
	keys    []legacyKey // records under the reversible key of a hashed id
	secrets []legacyKey // records whose raw holds secrets, value scrubbed
}

// scrub rewrites the records an earlier release stored with secrets in
// raw (a Veeam password, a VPP invite code), compare-and-set on the
// revision read: a record written since is the poller's own, scrubbed.
// The bucket keeps one revision per key, so the old value is gone.
func (u *Users) scrub(ctx context.Context, recs []legacyKey) error {
	for _, l := range recs {
		_, err := u.kv.Update(ctx, l.key, l.value, l.revision)
		if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("remove secrets from the state of %s: %w", l.key, err)
		}
	}
	return nil
}

// legacyKey is a record stored under the reversible key of an id that is
// now hashed.
type legacyKey struct {
	key      string
	value    []byte
	revision uint64
}

// migrate moves each legacy record to its hashed key (unless one is there
// already, written since) and deletes the old key, compare-and-set on its
// revision: a crash half-way leaves both, and the next load finishes.
func (u *Users) migrate(ctx context.Context, legacy []legacyKey) error {
	for _, l := range legacy {
		id, _ := events.DecodeKey(l.key[len(u.source)+1:])
		v := l.value
		if clean, err := events.ScrubRaw(v); err == nil {
			v = clean // never carry a secret to the new key
		}
		_, err := u.kv.Create(ctx, events.StateKey(u.source, id), v)
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("move state of %s to its hashed key: %w", l.key, err)
		}
		if err := u.kv.Delete(ctx, l.key, jetstream.LastRevision(l.revision)); err != nil {
			return fmt.Errorf("move state of %s to its hashed key: %w", l.key, err)
		}
	}
	return nil
}

func (u *Users) loadIndex(ctx context.Context) (*Index, stale, error) {
	var old stale
	w, stop, err := u.watch(ctx)
	if err != nil {
		return nil, stale{}, fmt.Errorf("load state of %s: %w", u.source, err)
	}
	defer stop()
	var x *Index
	var seen uint64 // the last revision the watch delivered
	prefix := len(u.source) + 1
	stall := newStall()
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, stale{}, fmt.Errorf("load state of %s: %w", u.source, ctx.Err())
		case <-stall.C:
			return nil, stale{}, fmt.Errorf("load state of %s: %w", u.source, ErrStalled)
		case e, ok := <-w.Updates():
			stall.Reset(StallTimeout)
			if !ok {
				return nil, stale{}, fmt.Errorf("load state of %s: watcher closed", u.source)
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
				if err := u.caughtUp(ctx, seen); err != nil {
					return nil, stale{}, fmt.Errorf("load state of %s: %w", u.source, err)
				}
				x.checked = x.lastSeq
				return x, old, nil
			}
			seen = max(seen, e.Revision())
			if e.Operation() != jetstream.KeyValuePut {
				// A deleted key is not a user, but its marker is the
				// last write Valid will find.
				x.lastSeq = max(x.lastSeq, e.Revision())
				x.markers++
				continue
			}
			id, err := keyID(e.Key()[prefix:], e.Value())
			if err != nil {
				return nil, stale{}, fmt.Errorf("load state of %s: key %s: %w", u.source, e.Key(), err)
			}
			if events.EncodeKey(id) != e.Key()[prefix:] {
				old.keys = append(old.keys, legacyKey{key: e.Key(), value: e.Value(), revision: e.Revision()})
				continue
			}
			// None of a record's own members is a secret name, so
			// ScrubRaw of the whole record removes only what raw holds;
			// MayHoldSecret rules most records out first, in a third of
			// the time.
			if events.MayHoldSecret(e.Value()) {
				if clean, err := events.ScrubRaw(e.Value()); err == nil && len(clean) != len(e.Value()) {
					old.secrets = append(old.secrets, legacyKey{key: e.Key(), value: clean, revision: e.Revision()})
				}
			}
			d, g, err := scanRecord(e.Value())
			if err != nil {
				return nil, stale{}, fmt.Errorf("load state of %s: key %s: %w", u.source, e.Key(), err)
			}
			x.put(id, pack(e.Revision(), d, g))
			x.lastSeq = max(x.lastSeq, e.Revision())
		}
	}
}

// keyID is the user id a key stands for: decoded from the key, or, for
// the hashed key of an over-long id, read from its record.
func keyID(key string, value []byte) (string, error) {
	id, err := events.DecodeKey(key)
	if !errors.Is(err, events.ErrHashedKey) {
		return id, err
	}
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return "", err
	}
	if events.EncodeKey(r.User.ID) != key {
		return "", fmt.Errorf("record of user %.40q… does not belong to its key", r.User.ID)
	}
	return r.User.ID, nil
}

// Valid reports whether x still describes the source's keys: whether every
// write to them since the last check was one x made itself (Commit). It
// reads, without values, the bucket's writes to the source's keys after the
// last check: one the index did not make (another replica, an operator, a
// write that raced this poller's own) makes the index invalid, however its
// revision compares with the index's own later writes.
func (u *Users) Valid(ctx context.Context, x *Index) (bool, error) {
	from, own := x.unchecked()
	w, stop, err := u.watch(ctx, jetstream.IncludeHistory(), jetstream.MetaOnly(), jetstream.ResumeFromRevision(from))
	if err != nil {
		return false, fmt.Errorf("check state of %s: %w", u.source, err)
	}
	defer stop()
	seen, last := 0, from-1
	stall := newStall()
	defer stall.Stop()
	for {
		select {
		case <-stall.C:
			return false, fmt.Errorf("check state of %s: %w", u.source, ErrStalled)
		case e, ok := <-w.Updates():
			stall.Reset(StallTimeout)
			if !ok {
				return false, fmt.Errorf("check state of %s: watcher closed", u.source)
			}
			if e == nil { // everything after from is delivered
				if seen != len(own) {
					// One of the index's writes is gone: overwritten
					// or purged by another writer.
					return false, nil
				}
				// A write and its trace can both be gone (a delete, then
				// the markers compacted away): count the keys too.
				if n, err := u.keys(ctx); err != nil || n != x.Len()+x.markers {
					return false, err
				}
				// The watch may have been served by a replica that is
				// behind: a foreign write it has not applied yet is
				// still a foreign write.
				if err := u.caughtUp(ctx, max(last, from-1)); errors.Is(err, ErrBehind) {
					return false, nil
				} else if err != nil {
					return false, fmt.Errorf("check state of %s: %w", u.source, err)
				}
				x.checkedThrough(last, len(own))
				return true, nil
			}
			if _, mine := slices.BinarySearch(own, e.Revision()); !mine {
				return false, nil
			}
			seen++
			last = e.Revision()
		case <-ctx.Done():
			return false, fmt.Errorf("check state of %s: %w", u.source, ctx.Err())
		}
	}
}

// keys counts the source's keys (delete markers included) with a watch
// that reads no value: the number of latest values it has to deliver.
func (u *Users) keys(ctx context.Context) (int, error) {
	w, stop, err := u.watch(ctx, jetstream.MetaOnly())
	if err != nil {
		return 0, fmt.Errorf("count keys of %s: %w", u.source, err)
	}
	defer stop()
	select {
	case e, ok := <-w.Updates():
		switch {
		case !ok:
			return 0, fmt.Errorf("count keys of %s: watcher closed", u.source)
		case e == nil:
			return 0, nil
		}
		return int(e.Delta()) + 1, nil
	case <-time.After(StallTimeout):
		return 0, fmt.Errorf("count keys of %s: %w", u.source, ErrStalled)
	case <-ctx.Done():
		return 0, fmt.Errorf("count keys of %s: %w", u.source, ctx.Err())
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
		out[ids[i]] = diff.Prev{User: r.user(), Revision: e.Revision()}
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
		if u.BeforeWrite != nil {
			if err := u.BeforeWrite(); err != nil {
				return err
			}
		}
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

// ErrBehind is a load or check of the state served by a replica of the
// bucket's stream that had not applied the last writes yet.
var ErrBehind = errors.New("the replica that answered is behind the stream leader; the next run reads again")

// lastRevisioner is a bucket that can say, from its stream leader, the
// revision of the last write to some keys (bus.LeaderReads).
type lastRevisioner interface {
	LastRevision(ctx context.Context, keys string) (uint64, error)
}

// caughtUp returns ErrBehind when the last write to the source's keys on
// the stream leader is after seen, the last revision a watch delivered. A
// watch is an ordered consumer, which a follower may serve from its own
// copy: a follower that is behind (a node back from an outage) delivers
// an old state, a user retired since looks present, and the run would
// retire it again under a new event id. Buckets that cannot tell (tests
// that wrap nothing) are taken as caught up.
func (u *Users) caughtUp(ctx context.Context, seen uint64) error {
	lr, ok := u.kv.(lastRevisioner)
	if !ok {
		return nil
	}
	last, err := lr.LastRevision(ctx, u.source+".>")
	if err != nil {
		return err
	}
	if last > seen {
		return fmt.Errorf("%w (it delivered revision %d, the leader has %d)", ErrBehind, seen, last)
	}
	return nil
}
