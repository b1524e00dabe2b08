package poller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// errLeaseLost ends a run whose replica no longer holds the source's lease.
var errLeaseLost = errors.New("lease lost")

// run is one run of one source as it passes through the stages of runOnce.
type run struct {
	src      Source
	name     string
	log      *slog.Logger
	start    time.Time
	observed time.Time
	res      Result
	lap      func(*time.Duration)

	st    state.Source // the source's bookkeeping as read
	stRev uint64
	users *state.Users
	k     *known // k.mu is held for the whole run
	idx   *state.Index
}

// runOnce runs a source once, as a sequence of stages:
//
//	load → repair → snapshot → scan → prepare → removals (guard, confirm) →
//	read → compute → carry → commit (mark, publish, write)
//
// Every stage between repair and commit only reads; a failure anywhere
// before the commit leaves NATS as it was.
func (p *Poller) runOnce(ctx context.Context, sc SourceConfig, keeper *leaseKeeper) (Result, error) {
	r, ctx, unlock, err := p.load(ctx, sc.Source)
	defer unlock()
	if err != nil {
		return r.res, err
	}
	if err := p.repair(ctx, r); err != nil {
		return r.res, err
	}
	snap, plan, err := p.snapshot(ctx, r, sc)
	if err != nil {
		return r.res, err
	}
	p.capRaw(plan.Changed, r.log)
	in := diff.Input{Source: r.name, Kind: r.src.Kind(), Known: r.idx, Complete: snap.Complete, Observed: r.observed, Plan: &plan}
	rm, err := p.removals(ctx, r, &plan, snap)
	if err != nil {
		return r.res, err
	}
	in.HoldRemovals = rm.hold
	r.lap(&r.res.Phases.Diff)
	if in.Previous, err = p.read(ctx, r, plan, rm.hold); err != nil {
		return r.res, err
	}
	evs, writes, err := p.compute(r, in)
	if err != nil {
		return r.res, err
	}
	evs, writes, left := p.carry(evs, writes)
	p.reportUncarried(r, left)
	next := p.nextState(r, snap, plan, rm)
	c := commit{evs: evs, writes: writes, next: next, snap: snap, plan: plan, fullSyncs: sc.FullSyncInterval > 0}
	return p.commit(ctx, r, c, keeper)
}

// load is the load stage: it reads the source's bookkeeping and takes (and
// checks, or loads) the compact index of its users. The returned unlock
// releases the source for its next run.
func (p *Poller) load(ctx context.Context, src Source) (*run, context.Context, func(), error) {
	id := runID()
	r := &run{src: src, name: src.Name(), start: p.cfg.Now(), res: Result{ID: id}}
	r.log = p.log.With("source", r.name, "run", id)
	// The source client logs with ctx, not with r.log: the run id reaches
	// its lines through the context (see logging.With).
	ctx = logging.With(ctx, "run", id)
	phaseStart := time.Now()
	var err error
	if r.st, r.stRev, err = p.srcs.Get(ctx, r.name); err != nil {
		return r, ctx, func() {}, err
	}
	if r.st.Held != nil {
		// Held removals stay reported between complete snapshots, and
		// after a restart, until a complete snapshot settles them.
		p.setHealth(src, func(h *Health) { h.RemovalsHeld = r.st.Held.Count })
	}
	// What the poller knows of the source's users is a compact index kept
	// between runs; only the records of the users that changed are read.
	r.users = state.NewUsers(p.h.Users, r.name)
	r.k = p.knownOf(r.name)
	r.k.mu.Lock()
	unlock := r.k.mu.Unlock
	if r.idx, err = p.index(ctx, r.k, r.users, r.log); err != nil {
		return r, ctx, unlock, err
	}
	if !r.k.baselineScrubbed {
		// Not a reason to fail the run: the next one tries again.
		if err := p.scrubBaseline(ctx, r.name, r.log); err != nil {
			r.log.Warn("could not check the baseline for secrets an earlier release stored; trying again next run", "err", err)
		} else {
			r.k.baselineScrubbed = true
		}
	}
	mark := time.Now()
	r.res.Phases.State = mark.Sub(phaseStart)
	r.lap = func(d *time.Duration) {
		now := time.Now()
		*d += now.Sub(mark)
		mark = now
	}
	return r, ctx, unlock, nil
}

// snapshot is the snapshot stage: a full or incremental listing, scanned
// page by page against the index as it arrives (diff.Scanner), so that
// the run keeps only the users that changed. A source's first listing keeps
// every user: it becomes the baseline.
func (p *Poller) snapshot(ctx context.Context, r *run, sc SourceConfig) (sources.Snapshot, diff.Plan, error) {
	req := sources.Request{Cursor: r.st.Cursor}
	if !r.st.Seeded || r.st.Cursor == "" || sc.FullSyncInterval <= 0 || r.start.Sub(r.st.LastFullSync) >= sc.FullSyncInterval {
		req.Full = true
	}
	r.log.Debug("run started", "full", req.Full, "known_users", r.idx.Len())
	r.res.SnapshotStart = time.Now()
	scan := diff.NewScanner(r.name, r.idx, !r.st.Seeded)
	snap, err := list(ctx, r.src, req, scan)
	r.res.SnapshotEnd = time.Now()
	if err != nil {
		if strings.HasPrefix(err.Error(), "source "+r.name+": ") {
			return snap, diff.Plan{}, err // named once: the clients' errors start with their source
		}
		return snap, diff.Plan{}, fmt.Errorf("source %s: snapshot: %w", r.name, err)
	}
	plan := scan.Finish(snap.Complete)
	r.lap(&r.res.Phases.Snapshot)
	r.res.Users, r.res.Complete = plan.Users, snap.Complete
	if !r.st.Seeded && !snap.Complete {
		return snap, plan, fmt.Errorf("source %s: first snapshot is incomplete; refusing to seed from it", r.name)
	}
	r.observed = p.cfg.Now().UTC()
	return snap, plan, nil
}

// streamer is a source that hands its listing over page by page.
type streamer interface {
	Stream(ctx context.Context, req sources.Request, out sources.Pages) (sources.Snapshot, error)
}

// list lists src into out: page by page from a streamer, else the whole
// snapshot as one page.
func list(ctx context.Context, src Source, req sources.Request, out sources.Pages) (sources.Snapshot, error) {
	if s, ok := src.(streamer); ok {
		return s.Stream(ctx, req, out)
	}
	snap, err := src.Snapshot(ctx, req)
	if err != nil {
		return snap, err
	}
	if err := out.Page(snap.Users); err != nil {
		return sources.Snapshot{}, err
	}
	snap.Users = nil
	return snap, nil
}

// removalDecision is what the removals stage decided about the users
// missing from a complete snapshot.
type removalDecision struct {
	hold      bool                // the guard holds them: no removal this run
	held      *state.HeldRemovals // the guard's memory to store
	heldCount int
	checked   bool // the guard ran (a complete snapshot)
}

// removals is the guard and confirm stages. The mass-removal guard looks at
// every missing user; if it holds them, nothing more is asked of the
// source. Otherwise each absence is confirmed (SPEC §1.3) and plan.Missing
// keeps only the confirmed ones.
func (p *Poller) removals(ctx context.Context, r *run, plan *diff.Plan, snap sources.Snapshot) (removalDecision, error) {
	var d removalDecision
	if !snap.Complete {
		return d, nil
	}
	d.checked = true
	d.held = p.guard(plan.Missing, plan.Known, plan.Active, r.st.Held, r.observed)
	var expired *state.HeldRemovals
	switch {
	case d.held != nil && r.observed.Sub(d.held.Since) < p.cfg.Guard.Hold:
		d.hold, d.heldCount = true, d.held.Count
		r.log.Error("mass removal held: users missing from the directory are not retired yet",
			"missing", d.held.Count, "known", plan.Known, "max_ratio", p.cfg.Guard.MaxRatio,
			"apply_after", d.held.Since.Add(p.cfg.Guard.Hold).Format(time.RFC3339),
			"what_to_do", "if the removal is real, wait for REMOVAL_HOLD or raise MAX_REMOVAL_RATIO; otherwise check the source")
	case d.held != nil:
		r.log.Warn("mass removal persisted for the whole hold time; retiring the missing users whose absence is confirmed", "missing", d.held.Count)
		expired, d.held = d.held, nil
	}
	r.res.Held = d.heldCount
	p.setHealth(r.src, func(h *Health) { h.RemovalsHeld = d.heldCount })
	if d.hold {
		return d, nil
	}
	r.lap(&r.res.Phases.Diff)
	a, err := p.confirmAbsences(ctx, r.src, plan.Missing, r.log)
	r.lap(&r.res.Phases.Confirm)
	if err != nil {
		return d, err
	}
	if expired != nil && a.unresolved > 0 {
		// The hold is over but not every absence could be confirmed this
		// time: keep the guard's memory, so that the next run confirms
		// again instead of starting a new hold for the same users.
		d.held = expired
	}
	plan.Missing = a.confirmed
	r.res.Unconfirmed = a.present + a.unresolved
	r.res.Relisted = a.relisted
	return d, nil
}

// read is the read stage: the previous records of the users that changed
// and, unless held, of the users to retire.
func (p *Poller) read(ctx context.Context, r *run, plan diff.Plan, hold bool) (map[string]diff.Prev, error) {
	need := slices.Clone(plan.Need)
	if !hold {
		need = append(need, plan.Missing...)
	}
	r.idx.SortByRevision(need)
	prev, err := r.users.Records(ctx, need)
	r.lap(&r.res.Phases.Read)
	return prev, err
}

// compute is the compute stage: the events and writes of the run. The
// first snapshot seeds silently (unless EMIT_INITIAL): no events for the
// users it brings.
func (p *Poller) compute(r *run, in diff.Input) ([]events.Event, []diff.Write, error) {
	in.SilentNew = !r.st.Seeded && !p.cfg.EmitInitial
	d, err := diff.Compute(in)
	if err != nil {
		return nil, nil, err
	}
	evs := d.Events
	if !r.st.Seeded {
		r.res.Seeded = true
		if !p.cfg.EmitInitial {
			// A first run that crashed part-way may have written some
			// users already: their changes since are real and are
			// published; only users the seed has not reached yet stay
			// silent.
			evs = evs[:0:0]
			for _, e := range d.Events {
				if _, seeded := r.idx.Lookup(e.Subject()); seeded {
					evs = append(evs, e)
				}
			}
		}
	}
	r.lap(&r.res.Phases.Diff)
	return evs, d.Writes, nil
}

// reportUncarried logs, counts and shows in the source's health the users
// the carry stage left out.
func (p *Poller) reportUncarried(r *run, left []uncarried) {
	r.res.Uncarried = len(left)
	for i, u := range left {
		if i == 5 {
			r.log.Error("more users cannot be carried in this run", "users", len(left)-i)
			break
		}
		r.log.Error("a user's change is too large to store even with its raw record cut; the other users go on, this one keeps its previous state and is tried again every run",
			"user", shortID(u.id), "bytes", u.bytes, "max_payload", p.cfg.MaxPayload,
			"what_to_do", "shorten the user's fields at the source, or raise the NATS server's max_payload")
	}
	p.setHealth(r.src, func(h *Health) { h.Uncarried = len(left) })
	if m := p.cfg.Metrics; m != nil {
		m.RecordsUncarried.WithLabelValues(r.name).Set(float64(len(left)))
	}
}

// nextState is the source's bookkeeping after the run.
func (p *Poller) nextState(r *run, snap sources.Snapshot, plan diff.Plan, rm removalDecision) state.Source {
	next := r.st
	if rm.checked {
		next.Held = rm.held
	}
	next.Seeded = true
	next.Publishing = 0 // the commit settles every event published before it
	next.Cursor = snap.Cursor
	if snap.Complete {
		next.LastFullSync = r.observed
		next.LastCompleteSize = plan.Users
	}
	return next
}

// commit is what the commit stage publishes and writes.
type commit struct {
	evs       []events.Event
	writes    []diff.Write
	next      state.Source
	snap      sources.Snapshot
	plan      diff.Plan // its Changed are every user in a seeding run (the baseline)
	fullSyncs bool      // the source alternates incremental runs with full syncs
}

// commit is the commit stage: it publishes every event (waiting for the
// acks), then writes the users and the source's bookkeeping with
// compare-and-set. A run that changed nothing writes nothing.
func (p *Poller) commit(ctx context.Context, r *run, c commit, keeper *leaseKeeper) (Result, error) {
	r.res.Events = len(c.evs)
	st := r.st
	// Steady state costs NATS no writes. The full-sync time matters only to
	// sources that alternate; for the others lastFullSync is written only
	// with a run's other changes (README: what rollcall_sources holds).
	putSource := len(c.writes) > 0 || c.next.Cursor != st.Cursor || !st.Seeded || c.next.LastCompleteSize != st.LastCompleteSize ||
		c.snap.Complete && c.fullSyncs || !sameHeld(c.next.Held, st.Held) || st.Publishing != 0
	if len(c.evs) == 0 && !putSource {
		// Nothing to commit, so no lease to confirm either: confirming
		// renews it, a write on every run.
		p.tracked(r, c)
		p.finish(r)
		return r.res, nil
	}
	return p.write(ctx, r, c, putSource, keeper)
}

// write publishes and writes. From its start the run commits or fails as a
// whole, even if a stop was requested meanwhile: abandoning between
// publish and write would only cost a rerun, but a bounded commit is
// cheaper and clearer.
func (p *Poller) write(ctx context.Context, r *run, c commit, putSource bool, keeper *leaseKeeper) (Result, error) {
	if ctx.Err() != nil {
		return r.res, fmt.Errorf("source %s: run abandoned before commit: %w", r.name, ctx.Err())
	}
	// The commit is bounded by CommitTimeout plus a millisecond per write,
	// and a requested stop cuts it after a short grace: events are always
	// published before state is written, so a cut commit is repaired by the
	// next run, whose republished ids JetStream drops.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.CommitTimeout+time.Duration(len(c.writes)+len(c.evs))*time.Millisecond)
	defer cancel()
	defer context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.ShutdownGrace, cancel)
		context.AfterFunc(cctx, func() { t.Stop() })
	})()
	if keeper != nil && !keeper.confirm(cctx) {
		return r.res, fmt.Errorf("source %s: %w before commit", r.name, errLeaseLost)
	}
	if r.res.Seeded {
		if err := p.putBaseline(cctx, r.name, c.plan.Changed); err != nil {
			return r.res, err
		}
	}
	if err := p.mark(cctx, r, len(c.evs)); err != nil {
		return r.res, err
	}
	putSource = putSource || r.st.Publishing != 0 // the commit clears the mark
	r.lap(&r.res.Phases.Write)                    // the lease, the baseline and the mark
	if err := p.fault(FaultBeforePublish); err != nil {
		return r.res, err
	}
	if err := p.publish(cctx, r, c.evs); err != nil {
		return r.res, err
	}
	if err := p.fault(FaultBeforeWrite); err != nil {
		return r.res, err
	}
	r.users.BeforeWrite = p.faultEach(FaultMidWrite)
	if err := r.users.Commit(cctx, c.writes, r.idx); err != nil {
		// Some writes may have been made: the index no longer tells.
		r.k.idx = nil
		return r.res, fmt.Errorf("source %s: %w", r.name, err)
	}
	r.res.Writes = len(c.writes)
	p.tracked(r, c)
	if err := p.fault(FaultBeforeSourceWrite); err != nil {
		return r.res, err
	}
	if putSource {
		if err := p.srcs.Put(cctx, r.name, c.next, r.stRev); err != nil {
			// Another writer moved the source's bookkeeping, so it may
			// have written users too, at any revision: load them again.
			r.k.idx = nil
			return r.res, fmt.Errorf("source %s: %w", r.name, err)
		}
	}
	r.lap(&r.res.Phases.Write)
	p.finish(r)
	return r.res, nil
}

// mark records, before a run publishes, where its events start on the
// stream (see repair), unless an earlier run's mark is still there.
func (p *Poller) mark(ctx context.Context, r *run, evs int) error {
	if evs == 0 || r.st.Publishing != 0 || p.h.Events == nil {
		return nil
	}
	info, err := p.h.Events.Info(ctx)
	if err != nil {
		return fmt.Errorf("source %s: read the stream's last sequence: %w", r.name, err)
	}
	st := r.st
	st.Publishing = info.State.LastSeq + 1
	rev, err := p.srcs.PutRev(ctx, r.name, st, r.stRev)
	if err != nil {
		r.k.idx = nil // another writer moved the bookkeeping
		return fmt.Errorf("source %s: %w", r.name, err)
	}
	r.st, r.stRev = st, rev
	return nil
}

// publish sends the run's events and waits for their acks.
func (p *Poller) publish(ctx context.Context, r *run, evs []events.Event) error {
	crash := p.fault(FaultMidPublish)
	if crash != nil {
		evs = evs[:len(evs)/2] // a crash half-way through
	}
	pr, err := bus.Publish(ctx, p.pub, evs)
	if crash != nil && err == nil {
		err = crash
	}
	r.lap(&r.res.Phases.Publish)
	r.res.Stored, r.res.Duplicates = pr.Stored, pr.Duplicates
	if m := p.cfg.Metrics; m != nil {
		for typ, n := range pr.StoredByType {
			m.EventsPublished.WithLabelValues(r.name, typ).Add(float64(n))
		}
		m.EventsDuplicated.WithLabelValues(r.name).Add(float64(pr.Duplicates))
	}
	if err != nil {
		return fmt.Errorf("source %s: %w", r.name, err)
	}
	return nil
}

// tracked records the size of a complete snapshot.
func (p *Poller) tracked(r *run, c commit) {
	if m := p.cfg.Metrics; m != nil && c.snap.Complete {
		m.UsersTracked.WithLabelValues(r.name).Set(float64(c.plan.Users))
	}
}

// finish completes a run's result; the run's details go to the debug log,
// its one line to the info log once the next run is scheduled (logRun).
func (p *Poller) finish(r *run) {
	r.res.Duration = p.cfg.Now().Sub(r.start)
	r.log.Debug("run details", append([]any{"users", r.res.Users, "complete", r.res.Complete, "seeded", r.res.Seeded,
		"events", r.res.Events, "stored", r.res.Stored, "duplicates", r.res.Duplicates, "writes", r.res.Writes, "unconfirmed", r.res.Unconfirmed,
		"duration", r.res.Duration.String()}, r.res.Phases.logAttrs()...)...)
}

// Messages of the one info line each successful run logs.
const (
	msgRunComplete = "run complete"
	msgSeeded      = "first run: seeded the source's users silently, no events (EMIT_INITIAL is false); changes are reported from the next run on"
	msgSeededLoud  = "first run: every user published as an event (EMIT_INITIAL is true)"
	// A first run after one that was cut short: the users the earlier one
	// stored are known, and their changes since are published.
	msgSeededResumed = "first run (resumed): seeded the rest of the source's users silently (EMIT_INITIAL is false); published the changes of users an interrupted first run had stored; changes are reported from the next run on"
)

// logRun is the one info line of a successful run: the source, the kind of
// run, the users it saw, the events it published, how long it took and,
// when next is not zero, when the next run is due. The first run says that
// it seeded the source, silently unless EMIT_INITIAL.
func (p *Poller) logRun(log *slog.Logger, res Result, next time.Time) {
	msg, kind := msgRunComplete, "incremental"
	switch {
	case res.Seeded && p.cfg.EmitInitial:
		msg, kind = msgSeededLoud, "seed"
	case res.Seeded && res.Events > 0:
		msg, kind = msgSeededResumed, "seed"
	case res.Seeded:
		msg, kind = msgSeeded, "seed"
	case res.Complete:
		kind = "full"
	}
	attrs := []any{"run", res.ID, "kind", kind, "users", res.Users, "events", res.Events}
	for _, a := range []struct {
		key string
		n   int
	}{{"duplicates", res.Duplicates}, {"unconfirmed", res.Unconfirmed}, {"held", res.Held}, {"uncarried", res.Uncarried}} {
		if a.n != 0 {
			attrs = append(attrs, a.key, a.n)
		}
	}
	attrs = append(attrs, "duration", res.Duration.Round(time.Millisecond).String())
	if !next.IsZero() {
		attrs = append(attrs, nextRun(next, p.cfg.Now())...)
	}
	log.Info(msg, attrs...)
}

// nextRun are the attributes that say when the next run is due.
func nextRun(next, now time.Time) []any {
	return []any{"next_run", next.Truncate(time.Second).Format(time.RFC3339), "next_in", next.Sub(now).Round(time.Second).String()}
}

// guard decides whether a complete snapshot's removals are suspicious: at
// least MinRemovals users and more than MaxRatio of the known ones, or a
// drop to a directory with no active user. It returns the held set
// (keeping its start time if the same users were already missing) or nil
// when nothing is held.
func (p *Poller) guard(removed []string, known, active int, prev *state.HeldRemovals, now time.Time) *state.HeldRemovals {
	n := len(removed)
	if n == 0 || n < p.cfg.Guard.MinRemovals {
		return nil
	}
	toEmpty := active == 0
	if !toEmpty && float64(n) <= p.cfg.Guard.MaxRatio*float64(known) {
		return nil
	}
	h := sha256.New()
	for _, id := range removed { // sorted by diff
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	digest := hex.EncodeToString(h.Sum(nil)[:16])
	if prev != nil && prev.Digest == digest {
		return prev
	}
	return &state.HeldRemovals{Digest: digest, Count: n, Since: now}
}

func sameHeld(a, b *state.HeldRemovals) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Fault points: where Config.Fault may stop a run as if the process had
// crashed there.
const (
	FaultBeforePublish     = "before-publish"      // nothing published
	FaultMidPublish        = "mid-publish"         // half of the events published
	FaultBeforeWrite       = "before-write"        // every event published, no user written
	FaultMidWrite          = "mid-write"           // some users written (asked before each write)
	FaultBeforeSourceWrite = "before-source-write" // users written, the source's bookkeeping not
)

// fault asks Config.Fault whether the run stops at point.
func (p *Poller) fault(point string) error {
	if p.cfg.Fault == nil {
		return nil
	}
	if err := p.cfg.Fault(point); err != nil {
		return fmt.Errorf("fault at %s: %w", point, err)
	}
	return nil
}

// faultEach is fault for a point asked before each of many writes.
func (p *Poller) faultEach(point string) func() error {
	if p.cfg.Fault == nil {
		return nil
	}
	return func() error { return p.fault(point) }
}
