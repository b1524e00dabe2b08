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
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/state"
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
}

// Config tunes the poller.
type Config struct {
	EmitInitial bool    // publish the first snapshot's users as events
	Jitter      float64 // fraction of the interval added at random; default 0.1
	// CommitTimeout bounds publishing and writing once a snapshot is in hand,
	// independent of shutdown, so that a stop never leaves a half-written run.
	CommitTimeout time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Poller polls sources and commits what changed.
type Poller struct {
	pub     jetstream.Publisher
	h       *bus.Handles
	cfg     Config
	sources []SourceConfig
	srcs    *state.Sources
	log     *slog.Logger
}

// New builds a poller. pub publishes to ROLLCALL_EVENTS; h are its buckets.
func New(pub jetstream.Publisher, h *bus.Handles, cfg Config, srcs ...SourceConfig) *Poller {
	if cfg.Jitter <= 0 {
		cfg.Jitter = 0.1
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 8 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Poller{pub: pub, h: h, cfg: cfg, sources: srcs, srcs: state.NewSources(h.Sources), log: log}
}

// Run polls every source on its interval until ctx ends. A failing source
// is logged and retried on its next tick; it never stops the others.
func (p *Poller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, sc := range p.sources {
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
	log := p.log.With("source", sc.Source.Name())
	for {
		if _, err := p.runOnce(ctx, sc); err != nil && ctx.Err() == nil {
			log.Error("run failed; state unchanged, will retry on the next interval", "err", err)
		}
		wait := sc.Interval + time.Duration(rand.Float64()*p.cfg.Jitter*float64(sc.Interval))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
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
}

// RunOnce runs one source once, now.
func (p *Poller) RunOnce(ctx context.Context, name string) (Result, error) {
	for _, sc := range p.sources {
		if sc.Source.Name() == name {
			return p.runOnce(ctx, sc)
		}
	}
	return Result{}, fmt.Errorf("poller: no source named %q", name)
}

func (p *Poller) runOnce(ctx context.Context, sc SourceConfig) (Result, error) {
	src := sc.Source
	name := src.Name()
	log := p.log.With("source", name, "run", runID())
	start := p.cfg.Now()
	var res Result

	st, stRev, err := p.srcs.Get(ctx, name)
	if err != nil {
		return res, err
	}
	users := state.NewUsers(p.h.Users, name)
	prev, err := users.Load(ctx)
	if err != nil {
		return res, err
	}
	req := sources.Request{Cursor: st.Cursor}
	if !st.Seeded || st.Cursor == "" || sc.FullSyncInterval <= 0 || start.Sub(st.LastFullSync) >= sc.FullSyncInterval {
		req.Full = true
	}
	log.Debug("run started", "full", req.Full, "known_users", len(prev))
	snap, err := src.Snapshot(ctx, req)
	if err != nil {
		return res, fmt.Errorf("source %s: snapshot: %w", name, err)
	}
	res.Users, res.Complete = len(snap.Users), snap.Complete
	if !st.Seeded && !snap.Complete {
		return res, fmt.Errorf("source %s: first snapshot is incomplete; refusing to seed from it", name)
	}
	observed := p.cfg.Now().UTC()
	d, err := diff.Compute(diff.Input{Source: name, Kind: src.Kind(), Previous: prev, Snapshot: snap.Users, Complete: snap.Complete, Observed: observed})
	if err != nil {
		return res, err
	}
	evs := d.Events
	if !st.Seeded {
		res.Seeded = true
		if !p.cfg.EmitInitial {
			evs = nil
		}
	}
	res.Events = len(evs)

	// From here on the run commits or fails as a whole, even if a stop was
	// requested meanwhile: abandoning between publish and write would only
	// cost a rerun, but a bounded commit is cheaper and clearer.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.CommitTimeout)
	defer cancel()
	if res.Seeded {
		if err := p.putBaseline(cctx, name, snap); err != nil {
			return res, err
		}
	}
	pr, err := bus.Publish(cctx, p.pub, evs)
	res.Stored, res.Duplicates = pr.Stored, pr.Duplicates
	if err != nil {
		return res, fmt.Errorf("source %s: %w", name, err)
	}
	if err := users.Apply(cctx, d.Writes); err != nil {
		return res, fmt.Errorf("source %s: %w", name, err)
	}
	res.Writes = len(d.Writes)
	next := st
	next.Seeded = true
	next.Cursor = snap.Cursor
	if snap.Complete {
		next.LastFullSync = observed
		next.LastCompleteSize = len(snap.Users)
	}
	// A run that changed nothing writes nothing: steady state costs NATS no
	// writes. The full-sync time matters only to sources that alternate.
	fullSyncDue := snap.Complete && sc.FullSyncInterval > 0
	if len(d.Writes) > 0 || next.Cursor != st.Cursor || !st.Seeded || next.LastCompleteSize != st.LastCompleteSize || fullSyncDue {
		if err := p.srcs.Put(cctx, name, next, stRev); err != nil {
			return res, fmt.Errorf("source %s: %w", name, err)
		}
	}
	log.Info("run complete", "users", res.Users, "complete", res.Complete, "seeded", res.Seeded,
		"events", res.Events, "duplicates", res.Duplicates, "writes", res.Writes, "duration", p.cfg.Now().Sub(start).String())
	return res, nil
}

// putBaseline keeps the first complete snapshot, which publishes no events,
// so that the directory at any time can be rebuilt from it and the trail.
func (p *Poller) putBaseline(ctx context.Context, name string, snap sources.Snapshot) error {
	if p.h.Baselines == nil {
		return nil
	}
	b, err := json.Marshal(snap.Users)
	if err != nil {
		return fmt.Errorf("source %s: encode baseline: %w", name, err)
	}
	if _, err := p.h.Baselines.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "first complete snapshot of " + name}, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("source %s: store baseline: %w", name, err)
	}
	return nil
}

func runID() string {
	var b [6]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrNoSources is returned when a poller is configured without any source.
var ErrNoSources = errors.New("no source configured")
