// Package poller runs rollcall's snapshot → diff → publish → commit loop, one
// goroutine per source.
//
// A run is all or nothing towards state: it fetches a whole snapshot, computes
// the events, publishes them all (waiting for acks, each with its
// deterministic id as Nats-Msg-Id) and only then writes the users and the
// source's cursor with compare-and-set. A run that fails before the commit
// writes nothing; a crash during the commit is repaired by the next run, whose
// republished events JetStream drops as duplicates.
package poller

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// Source is what the poller needs of a directory.
type Source interface {
	Name() string
	Kind() string
	Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error)
}

// SourceConfig schedules one source.
type SourceConfig struct {
	Source   Source
	Interval time.Duration
	// FullSyncInterval is how often an incremental source lists everything;
	// zero lists everything on every run.
	FullSyncInterval time.Duration
	// Watch lists the files the source's credentials come from. When the
	// source is stopped by a credential error, a change to any of them
	// resumes it, with a source built afresh by Reload.
	Watch  []string
	Reload func() (Source, error)
	// digest is the credential files' contents as the running source was
	// built from them, so that a rotation made before the source failed
	// still counts as a change.
	digest string
	// Hint tells the operator how to fix a stopped source, e.g. "download a
	// new content token and update VPP_STOKEN_FILE".
	Hint string
}

// Guard is the mass-removal guard of SPEC §1.3.
type Guard struct {
	MinRemovals int           // REMOVAL_GUARD_MIN; default 10
	MaxRatio    float64       // MAX_REMOVAL_RATIO; default 0.2
	Hold        time.Duration // REMOVAL_HOLD; default 24h
}

// stopper is an error that means polling cannot succeed until an operator
// acts (an invalid, expired or revoked credential).
type stopper interface{ StopsSource() bool }

// tokenExpirer is a source whose credential expires.
type tokenExpirer interface{ TokenExpiry() (time.Time, bool) }

// Config tunes the poller.
type Config struct {
	EmitInitial bool    // publish the first snapshot's users as events
	Jitter      float64 // fraction of the interval added at random; default 0.1
	// CommitTimeout bounds publishing and writing once a snapshot is in hand,
	// independent of shutdown, so that a stop never leaves a half-written run.
	CommitTimeout time.Duration
	// ShutdownGrace is how long a commit in progress may go on after a
	// stop is requested; default 5s.
	ShutdownGrace time.Duration
	Guard         Guard
	// WatchEvery is how often a stopped source's credential files are
	// checked for a change; default 10s.
	WatchEvery time.Duration
	// ExpiryWarning is how far ahead of a credential's expiry the poller
	// starts warning; default 30 days.
	ExpiryWarning time.Duration
	Lease         LeaseConfig
	// MaxPayload is the largest message the NATS server accepts (its
	// max_payload); a user whose events or KV record would be larger is
	// left out of the run and reported. Default 1 MiB, NATS's default.
	MaxPayload int
	// MaxRawBytes caps each user's raw record (events.CapRaw); default
	// events.DefaultMaxRawBytes.
	MaxRawBytes int
	// LookupTimeout bounds one direct lookup of a missing user; one that
	// takes longer counts as failed, and a second listing decides. Default
	// 30s.
	LookupTimeout time.Duration
	// Fault, when set, is asked at each fault point of a run (Fault*
	// constants) and stops the run there, as a crash would, when it
	// returns an error. Tests and the randomized simulation use it.
	Fault func(point string) error
	// OnRun, when set, is called after every run of a source with its
	// result and error, from the source's goroutine. The randomized
	// simulation checks what each run saw with it.
	OnRun   func(source string, res Result, err error)
	Metrics *metrics.Poller
	Logger  *slog.Logger
	Now     func() time.Time
}

// Poller polls sources and commits what changed.
type Poller struct {
	pub     jetstream.Publisher
	h       *bus.Handles
	cfg     Config
	sources []SourceConfig
	srcs    *state.Sources
	leases  *state.Leases
	log     *slog.Logger

	mu     sync.Mutex
	health map[string]Health
	known  map[string]*known
}

// known is a source's state as the poller keeps it between runs: the
// compact index of its users (nil until loaded, and again after a commit
// failed half-way). mu serialises the source's runs.
type known struct {
	mu  sync.Mutex
	idx *state.Index
	// baselineScrubbed is set once this process has made sure the
	// source's baseline holds no secrets (scrubBaseline).
	baselineScrubbed bool
}

// Health is a source's condition, for readiness and the operator.
type Health struct {
	State        string    `json:"state"` // "starting", "ok", "failing" or "stopped"
	Error        string    `json:"error,omitempty"`
	LastSuccess  time.Time `json:"lastSuccess,omitzero"`
	RemovalsHeld int       `json:"removalsHeld,omitempty"`
	// Uncarried counts the users the last run could not carry (their
	// events or record too large to store even cut).
	Uncarried   int       `json:"uncarried,omitempty"`
	TokenExpiry time.Time `json:"tokenExpiry,omitzero"`
}

// Health states.
const (
	StateStarting = "starting"
	StateOK       = "ok"
	StateFailing  = "failing"
	StateStopped  = "stopped"
	// StateStandby: another replica holds the source's lease.
	StateStandby = "standby"
)

// New builds a poller. pub publishes to ROLLCALL_EVENTS; h are its buckets.
func New(pub jetstream.Publisher, h *bus.Handles, cfg Config, srcs ...SourceConfig) *Poller {
	if cfg.Jitter <= 0 {
		cfg.Jitter = 0.1
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 8 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Guard.MinRemovals <= 0 {
		cfg.Guard.MinRemovals = 10
	}
	if cfg.Guard.MaxRatio <= 0 {
		cfg.Guard.MaxRatio = 0.2
	}
	if cfg.Guard.Hold <= 0 {
		cfg.Guard.Hold = 24 * time.Hour
	}
	if cfg.WatchEvery <= 0 {
		cfg.WatchEvery = 10 * time.Second
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 30 * time.Second
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.MaxRawBytes <= 0 {
		cfg.MaxRawBytes = events.DefaultMaxRawBytes
	}
	if cfg.ExpiryWarning <= 0 {
		cfg.ExpiryWarning = 30 * 24 * time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Poller{pub: pub, h: h, cfg: cfg, sources: srcs, srcs: state.NewSources(h.Sources), leases: state.NewLeases(h.Sources), log: log, health: map[string]Health{}, known: map[string]*known{}}
	for _, sc := range srcs {
		p.health[sc.Source.Name()] = Health{State: StateStarting}
		if m := cfg.Metrics; m != nil {
			m.SourceHealthy.WithLabelValues(sc.Source.Name(), sc.Source.Kind()).Set(0)
			m.RemovalsHeld.WithLabelValues(sc.Source.Name()).Set(0)
		}
	}
	return p
}

// Health reports every source's condition.
func (p *Poller) Health() map[string]Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Health, len(p.health))
	for k, v := range p.health {
		out[k] = v
	}
	return out
}

func (p *Poller) setHealth(src Source, f func(h *Health)) {
	p.mu.Lock()
	h := p.health[src.Name()]
	f(&h)
	p.health[src.Name()] = h
	p.mu.Unlock()
	if m := p.cfg.Metrics; m != nil {
		v := 0.0
		if h.State == StateOK {
			v = 1
		}
		m.SourceHealthy.WithLabelValues(src.Name(), src.Kind()).Set(v)
		m.RemovalsHeld.WithLabelValues(src.Name()).Set(float64(h.RemovalsHeld))
	}
}

// Run polls every source on its interval until ctx ends. A failing source
// is logged and retried on its next tick; it never stops the others.
func (p *Poller) Run(ctx context.Context) error {
	// Each NATS request is bounded by the client's timeout, never by a
	// far deadline of the caller (see bus.WithoutDeadline).
	ctx, release := bus.WithoutDeadline(ctx)
	defer release()
	var wg sync.WaitGroup
	for _, sc := range p.sources {
		if len(sc.Watch) > 0 {
			sc.digest = fileDigest(sc.Watch)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(ctx, sc)
		}()
	}
	wg.Wait()
	return nil
}

func (p *Poller) loop(ctx context.Context, sc SourceConfig) {
	var keeper *leaseKeeper
	if p.cfg.Lease.TTL > 0 {
		keeper = newLeaseKeeper(p.leases, sc.Source.Name(), p.cfg.Lease, p.cfg.Now, p.log.With("source", sc.Source.Name()))
		done := make(chan struct{})
		go func() {
			defer close(done)
			keeper.run(ctx)
		}()
		defer func() { <-done }()
	}
	for {
		log := p.log.With("source", sc.Source.Name())
		if keeper != nil && !keeper.isOwned() {
			p.setHealth(sc.Source, func(h *Health) { h.State = StateStandby })
		}
		if keeper != nil && !keeper.waitOwned(ctx) {
			return
		}
		p.checkExpiry(sc.Source, log)
		start := p.cfg.Now()
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if keeper != nil {
			rctx, cancel = keeper.runContext(ctx)
		}
		res, err := p.runOnce(rctx, sc, keeper)
		if p.cfg.OnRun != nil {
			p.cfg.OnRun(sc.Source.Name(), res, err)
		}
		lost := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			// Stopping: a run that committed meanwhile still says what it
			// did (no next run); one abandoned wrote nothing.
			if err == nil {
				p.logRun(log, res, time.Time{})
			} else {
				log.Debug("run abandoned at shutdown; nothing written", "run", res.ID, "err", err)
			}
			return
		}
		if lost || errors.Is(err, errLeaseLost) {
			log.Warn("lease lost during a run; the run was abandoned without writing")
			continue
		}
		p.observe(sc.Source, start, err)
		var st stopper
		if err != nil && errors.As(err, &st) && st.StopsSource() {
			next, digest, ok := p.stopped(ctx, sc, err, log)
			if !ok {
				return
			}
			sc.Source, sc.digest = next, digest
			continue // run at once with the new credentials
		}
		wait := sc.Interval + time.Duration(rand.Float64()*p.cfg.Jitter*float64(sc.Interval))
		next := p.cfg.Now().Add(wait)
		if err != nil {
			log.Error("run failed; state unchanged, will retry on the next interval", append([]any{"run", res.ID, "err", err}, nextRun(next, p.cfg.Now())...)...)
		} else {
			p.logRun(log, res, next)
		}
		if httpx.Sleep(ctx, wait) != nil {
			return
		}
	}
}

func (p *Poller) observe(src Source, start time.Time, err error) {
	outcome := "success"
	p.setHealth(src, func(h *Health) {
		if err != nil {
			outcome = "failure"
			h.State, h.Error = StateFailing, err.Error()
			return
		}
		h.State, h.Error, h.LastSuccess = StateOK, "", p.cfg.Now()
	})
	if m := p.cfg.Metrics; m != nil {
		m.Runs.WithLabelValues(src.Name(), outcome).Inc()
		m.RunDuration.WithLabelValues(src.Name()).Observe(p.cfg.Now().Sub(start).Seconds())
		if err == nil {
			m.LastSuccess.WithLabelValues(src.Name()).Set(float64(p.cfg.Now().Unix()))
		}
	}
}

// stopped parks a source whose credentials were refused: it is reported
// unhealthy and polled no more, while the other sources go on. It resumes
// when one of its credential files changes and the rebuilt source accepts
// the new contents.
func (p *Poller) stopped(ctx context.Context, sc SourceConfig, cause error, log *slog.Logger) (Source, string, bool) {
	p.setHealth(sc.Source, func(h *Health) { h.State, h.Error = StateStopped, cause.Error() })
	if m := p.cfg.Metrics; m != nil {
		m.Runs.WithLabelValues(sc.Source.Name(), "stopped").Inc()
	}
	hint := sc.Hint
	if hint == "" {
		hint = "fix the source's credentials"
	}
	if len(sc.Watch) == 0 || sc.Reload == nil {
		log.Error("source stopped: its credentials were refused; other sources keep running. "+hint+" and restart the poller", "err", cause)
		<-ctx.Done()
		return nil, "", false
	}
	log.Error("source stopped: its credentials were refused; other sources keep running. "+hint+"; polling resumes by itself when the file changes", "err", cause, "watching", sc.Watch)
	last := sc.digest
	for first := true; ; first = false {
		if !first && httpx.Sleep(ctx, p.cfg.WatchEvery) != nil {
			return nil, "", false
		}
		d := fileDigest(sc.Watch)
		if d == last {
			continue
		}
		last = d
		next, err := sc.Reload()
		if err != nil {
			log.Error("credential file changed but cannot be used; still stopped", "err", err)
			continue
		}
		log.Info("credential file changed; resuming the source")
		return next, d, true
	}
}

// fileDigest hashes the contents of files, so that a rewrite with the same
// contents (a touch, a re-mount) does not count as a change.
func fileDigest(files []string) string {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "%s:error:%v;", f, err)
			continue
		}
		fmt.Fprintf(h, "%s:%d:", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkExpiry exports the credential's expiry and warns from ExpiryWarning
// ahead of it.
func (p *Poller) checkExpiry(src Source, log *slog.Logger) {
	te, ok := src.(tokenExpirer)
	if !ok {
		return
	}
	exp, ok := te.TokenExpiry()
	if !ok {
		return
	}
	p.setHealth(src, func(h *Health) { h.TokenExpiry = exp })
	if m := p.cfg.Metrics; m != nil {
		m.TokenExpiry.WithLabelValues(src.Name()).Set(float64(exp.Unix()))
	}
	left := exp.Sub(p.cfg.Now())
	switch {
	case left <= 0:
		log.Error("the source's token has expired; download a new one", "expired", exp.Format(time.RFC3339))
	case left <= p.cfg.ExpiryWarning:
		log.Warn("the source's token expires soon; download a new one before then", "expires", exp.Format(time.RFC3339), "days_left", int(left.Hours()/24))
	}
}

// Result describes one run.
type Result struct {
	Users      int  // users in the snapshot
	Complete   bool // whether the snapshot was the whole directory
	Seeded     bool // whether this run was the source's first (silent) snapshot
	Events     int  // events computed
	Stored     int  // events the stream stored
	Duplicates int  // events the stream already had
	Writes     int  // users written
	Held       int  // removals the guard held back
	// SnapshotStart and SnapshotEnd bracket the listing the run diffed.
	SnapshotStart, SnapshotEnd time.Time
	// Unconfirmed counts the users missing from a complete snapshot whose
	// absence was not confirmed (found by a lookup or a second listing, or
	// neither could tell): they keep their state.
	Unconfirmed int
	// Relisted says the run listed the directory a second time to confirm
	// absences (SPEC §1.3): too many to look up one by one, or lookups
	// failed or are not offered.
	Relisted  bool
	Uncarried int // users left out because their change is too large to store
	// Phases is where the run's time went.
	Phases Phases
	// ID names the run in its log lines; Duration is how long it took.
	ID       string
	Duration time.Duration
}

// Phases times the steps of a run (wall clock).
type Phases struct {
	State    time.Duration // the source's bookkeeping and the users' index: read, checked or loaded
	Snapshot time.Duration // fetching and decoding the directory
	Diff     time.Duration // comparing it with the index and building the events
	Confirm  time.Duration // confirming absences: lookups or a second listing
	Read     time.Duration // reading the previous records of the users that changed
	Publish  time.Duration // publishing the events and waiting for their acks
	Write    time.Duration // writing the users and the source's bookkeeping
}

func (ph Phases) logAttrs() []any {
	return []any{"t_state", ph.State.String(), "t_snapshot", ph.Snapshot.String(), "t_diff", ph.Diff.String(), "t_confirm", ph.Confirm.String(),
		"t_read", ph.Read.String(), "t_publish", ph.Publish.String(), "t_write", ph.Write.String()}
}

// RunOnce runs one source once, now.
func (p *Poller) RunOnce(ctx context.Context, name string) (Result, error) {
	ctx, release := bus.WithoutDeadline(ctx)
	defer release()
	for _, sc := range p.sources {
		if sc.Source.Name() == name {
			res, err := p.runOnce(ctx, sc, nil)
			if p.cfg.OnRun != nil {
				p.cfg.OnRun(name, res, err)
			}
			if err == nil {
				p.logRun(p.log.With("source", name), res, time.Time{})
			}
			return res, err
		}
	}
	return Result{}, fmt.Errorf("poller: no source named %q", name)
}

// LoadState loads what the poller keeps in memory of every source's users
// (their compact index), as the first run of each would: after it, the
// first runs start at once. Run does not need it.
func (p *Poller) LoadState(ctx context.Context) error {
	for _, sc := range p.sources {
		k := p.knownOf(sc.Source.Name())
		k.mu.Lock()
		_, err := p.index(ctx, k, state.NewUsers(p.h.Users, sc.Source.Name()), p.log.With("source", sc.Source.Name()))
		k.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// KnownUsers is how many users (tombstones included) the poller keeps in
// its memory, over every source whose state is loaded.
func (p *Poller) KnownUsers() int {
	p.mu.Lock()
	ks := make([]*known, 0, len(p.known))
	for _, k := range p.known {
		ks = append(ks, k)
	}
	p.mu.Unlock()
	n := 0
	for _, k := range ks {
		k.mu.Lock()
		if k.idx != nil {
			n += k.idx.Len()
		}
		k.mu.Unlock()
	}
	return n
}

func (p *Poller) knownOf(name string) *known {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.known[name]
	if k == nil {
		k = &known{}
		p.known[name] = k
	}
	return k
}

// index returns the source's index, loading it when there is none yet or
// when the KV no longer matches it. k.mu must be held.
func (p *Poller) index(ctx context.Context, k *known, users *state.Users, log *slog.Logger) (*state.Index, error) {
	if k.idx != nil {
		ok, err := users.Valid(ctx, k.idx)
		if err != nil {
			return nil, err
		}
		if ok {
			return k.idx, nil
		}
		log.Warn("the source's users were changed in the KV by another writer; loading them again")
		k.idx = nil
	}
	start := time.Now()
	idx, err := users.LoadIndex(ctx)
	if err != nil {
		return nil, err
	}
	log.Info("loaded the source's users from the KV", "users", idx.Len(), "duration", time.Since(start).String())
	k.idx = idx
	return idx, nil
}

// baselineChunkSize is the object store chunk of a baseline. The object
// store publishes chunks asynchronously, at most 4000 unacknowledged
// (nats.go's default), and fails the Put when none is acknowledged within
// 200 ms of reaching that: with the default 128 KiB chunks, the 700 MB
// baseline of a million Veeam users failed the first run whenever the
// server (embedded, sharing the poller's two cores and its garbage
// collection) fell behind. 512 KiB chunks keep baselines up to 2 GB under
// the limit, and stay below NATS's default 1 MB max_payload.
const baselineChunkSize = 512 << 10

// putBaseline keeps the first complete snapshot, which publishes no events,
// so that the directory at any time can be rebuilt from it and the trail.
// The JSON (the same bytes json.Marshal(snap.Users) gives) is encoded user
// by user as the object store reads it, not held whole in memory.
func (p *Poller) putBaseline(ctx context.Context, name string, users []events.User) error {
	if p.h.Baselines == nil {
		return nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(encodeUsers(pw, users)) }()
	defer pr.Close()
	meta := jetstream.ObjectMeta{Name: name, Description: "first complete snapshot of " + name,
		Metadata: map[string]string{bus.BaselineScrubbed: "1"}, // capRaw has scrubbed every record
		Opts:     &jetstream.ObjectMetaOptions{ChunkSize: baselineChunkSize}}
	if _, err := p.h.Baselines.Put(ctx, meta, pr); err != nil {
		return fmt.Errorf("source %s: store baseline: %w", name, err)
	}
	return nil
}

// encodeUsers writes json.Marshal(users) to w, one user at a time.
func encodeUsers(w io.Writer, users []events.User) error {
	if users == nil {
		_, err := io.WriteString(w, "null")
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	sep := byte('[')
	for _, u := range users {
		b, err := json.Marshal(u)
		if err != nil {
			return fmt.Errorf("encode baseline: %w", err)
		}
		if err := bw.WriteByte(sep); err != nil {
			return err
		}
		sep = ','
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	if sep == '[' {
		if err := bw.WriteByte('['); err != nil {
			return err
		}
	}
	if err := bw.WriteByte(']'); err != nil {
		return err
	}
	return bw.Flush()
}

func runID() string {
	var b [6]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
