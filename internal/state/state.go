// Package state keeps what the poller knows between runs in JetStream KV:
// each user's last state in rollcall_users and each source's cursor and
// bookkeeping in rollcall_sources. Every write is compare-and-set on the
// revision read, so two writers never silently overwrite each other.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// ErrConflict means another writer changed a key since it was read. The run
// must be abandoned and retried from fresh state.
var ErrConflict = errors.New("state changed by another writer")

// ErrStalled means a watch of the bucket stopped delivering: the server
// went away (a restart, a failover) and the watch did not resume. The run
// fails and the next one watches afresh, instead of waiting for ever.
var ErrStalled = errors.New("the bucket's watch stopped delivering")

// StallTimeout is how long a watch may deliver nothing before it counts
// as stalled. A watch of a healthy bucket delivers its first value, or
// the end of the initial values, at once.
var StallTimeout = 10 * time.Second

func newStall() *time.Timer { return time.NewTimer(StallTimeout) }

// watch opens a watch of the source's keys. The request that creates it is
// bounded by StallTimeout: nats.go waits for its answer as long as the
// context allows, and one lost in a server restart is never answered (a
// poller whose run context has no deadline hung there for good). The
// context also bounds the watch's subscription, so it is cancelled only
// by the returned stop, once the caller is done with the watch.
func (u *Users) watch(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, func(), error) {
	wctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(StallTimeout, cancel)
	w, err := u.kv.Watch(wctx, u.source+".>", opts...)
	t.Stop()
	if err != nil {
		cancel()
		if ctx.Err() == nil && wctx.Err() != nil {
			err = fmt.Errorf("%w: creating it took over %s", ErrStalled, StallTimeout)
		}
		return nil, nil, err
	}
	return w, func() { _ = w.Stop(); cancel() }, nil
}

// Record is a user's entry in rollcall_users.
type Record struct {
	User        events.User `json:"user"`
	Fingerprint string      `json:"fingerprint"`
	// Entries is the Apple v2 user's events.User.Entries, which events
	// never carry; absent for other kinds and in records written before
	// rollcall kept it (not known).
	Entries *events.V2Entries `json:"vpp2Entries,omitempty"`
}

// user is the recorded user, with its Entries.
func (r Record) user() events.User {
	u := r.User
	u.Entries = r.Entries
	return u
}

// Users is one source's view of rollcall_users.
type Users struct {
	kv     jetstream.KeyValue
	source string
	// BeforeWrite, when set, is called before each write of Commit; an
	// error stops the commit there, as a crash would. The randomized
	// simulation stops runs half-way through their writes with it.
	BeforeWrite func() error
}

// NewUsers scopes kv to one source's keys.
func NewUsers(kv jetstream.KeyValue, source string) *Users {
	return &Users{kv: kv, source: source}
}

// Load reads every user of the source with the revision it was read at.
func (u *Users) Load(ctx context.Context) (map[string]diff.Prev, error) {
	w, stop, err := u.watch(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("load state of %s: %w", u.source, err)
	}
	defer stop()
	out := map[string]diff.Prev{}
	stall := newStall()
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load state of %s: %w", u.source, ctx.Err())
		case <-stall.C:
			return nil, fmt.Errorf("load state of %s: %w", u.source, ErrStalled)
		case e, ok := <-w.Updates():
			stall.Reset(StallTimeout)
			if !ok {
				return nil, fmt.Errorf("load state of %s: watcher closed", u.source)
			}
			if e == nil { // the initial values are all delivered
				return out, nil
			}
			var r Record
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				return nil, fmt.Errorf("load state of %s: key %s: %w", u.source, e.Key(), err)
			}
			out[r.User.ID] = diff.Prev{User: r.user(), Revision: e.Revision()}
		}
	}
}

// applyConcurrency bounds the KV requests in flight: one round trip per
// user one after the other is too slow for a large first snapshot on a
// replicated bucket.
const applyConcurrency = 64

// Apply commits writes with compare-and-set, several at a time. It stops at
// the first failure and returns ErrConflict for a revision mismatch; writes
// already made stay, which is safe because the events for every write were
// published before Apply was called and a rerun recomputes the rest.
func (u *Users) Apply(ctx context.Context, writes []diff.Write) error {
	return u.each(ctx, len(writes), func(ctx context.Context, i int) error {
		_, err := u.write(ctx, writes[i], writes[i].User.Digest())
		return err
	})
}

// each calls f for 0..n-1 on applyConcurrency goroutines (fewer for a
// short list) and stops at the first error.
func (u *Users) each(ctx context.Context, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(n, applyConcurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// write stores w (whose fingerprint is d) and returns its new revision.
func (u *Users) write(ctx context.Context, w diff.Write, d events.Digest) (uint64, error) {
	b, err := json.Marshal(Record{User: w.User, Fingerprint: d.String(), Entries: w.User.Entries})
	if err != nil {
		return 0, fmt.Errorf("encode state of %s: %w", w.User.ID, err)
	}
	key := events.StateKey(u.source, w.User.ID)
	var rev uint64
	if w.Revision == 0 {
		rev, err = u.kv.Create(ctx, key, b)
	} else {
		rev, err = u.kv.Update(ctx, key, b, w.Revision)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("write %s: %w", key, ErrConflict)
	case err != nil:
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return rev, nil
}

// Source is a source's bookkeeping in rollcall_sources.
type Source struct {
	// Seeded is set once the first complete snapshot is committed; until
	// then runs seed the state silently (unless EMIT_INITIAL).
	Seeded bool `json:"seeded"`
	// Cursor is the incremental position (VPP sinceModifiedToken).
	Cursor string `json:"cursor,omitempty"`
	// LastFullSync is when the last complete snapshot was committed.
	LastFullSync     time.Time `json:"lastFullSync,omitzero"`
	LastCompleteSize int       `json:"lastCompleteSize"`
	// Held describes removals the mass-removal guard is holding back: the
	// digest of the missing ids, how many, and since when the same set has
	// been missing from every complete snapshot.
	Held *HeldRemovals `json:"held,omitempty"`
	// Publishing is set, before a run publishes, to the first sequence of
	// ROLLCALL_EVENTS its events can have, and cleared by its commit: when
	// it is set, a run published events it may not have committed, and the
	// next run reads them back (the poller's repair stage).
	Publishing uint64 `json:"publishing,omitempty"`
}

// HeldRemovals is the guard's memory of a suspicious mass removal.
type HeldRemovals struct {
	Digest string    `json:"digest"`
	Count  int       `json:"count"`
	Since  time.Time `json:"since"`
}

// Sources is rollcall_sources.
type Sources struct{ kv jetstream.KeyValue }

// NewSources wraps kv.
func NewSources(kv jetstream.KeyValue) *Sources { return &Sources{kv: kv} }

func sourceKey(name string) string { return name + ".state" }

// Get returns a source's bookkeeping and its revision (0 if none yet).
func (s *Sources) Get(ctx context.Context, name string) (Source, uint64, error) {
	e, err := s.kv.Get(ctx, sourceKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Source{}, 0, nil
	}
	if err != nil {
		return Source{}, 0, fmt.Errorf("read source state %s: %w", name, err)
	}
	var st Source
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return Source{}, 0, fmt.Errorf("read source state %s: %w", name, err)
	}
	return st, e.Revision(), nil
}

// Put writes a source's bookkeeping, compare-and-set against rev.
func (s *Sources) Put(ctx context.Context, name string, st Source, rev uint64) error {
	_, err := s.PutRev(ctx, name, st, rev)
	return err
}

// PutRev is Put that returns the new revision.
func (s *Sources) PutRev(ctx context.Context, name string, st Source, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = s.kv.Create(ctx, sourceKey(name), b)
	} else {
		next, err = s.kv.Update(ctx, sourceKey(name), b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("write source state %s: %w", name, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("write source state %s: %w", name, err)
	}
	return next, nil
}

// SplitKey returns the source and user id of a rollcall_users key.
func SplitKey(key string) (source, id string, err error) {
	src, enc, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", fmt.Errorf("state key %q has no source prefix", key)
	}
	id, err = events.DecodeKey(enc)
	return src, id, err
}
