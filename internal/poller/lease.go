package poller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/state"
)

// LeaseConfig makes replicas share sources: each source is polled only by
// the replica holding its lease in rollcall_sources.
type LeaseConfig struct {
	// Owner names this replica; it must differ between replicas.
	Owner string
	// TTL is the lease period; zero disables leases (a single replica, with
	// no lease renewals writing to NATS while idle). A replica that dies is
	// replaced within two periods.
	TTL time.Duration
}

// leaseKeeper holds one source's lease for this replica: it renews it every
// third of the TTL and cancels the current run the moment it is lost.
type leaseKeeper struct {
	leases *state.Leases
	source string
	cfg    LeaseConfig
	now    func() time.Time
	log    *slog.Logger

	mu         sync.Mutex
	owned      bool
	validUntil time.Time          // our own view of the lease's expiry
	wake       chan struct{}      // closed when ownership changes
	cancelRun  context.CancelFunc // cancels the run in progress, if any
}

func newLeaseKeeper(l *state.Leases, source string, cfg LeaseConfig, now func() time.Time, log *slog.Logger) *leaseKeeper {
	return &leaseKeeper{leases: l, source: source, cfg: cfg, now: now, log: log, wake: make(chan struct{})}
}

// run renews until ctx ends, then releases the lease so that a standby
// replica takes over at once.
func (k *leaseKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.cfg.TTL / 3)
	defer t.Stop()
	for {
		k.renew(ctx)
		select {
		case <-ctx.Done():
			// A stop, not a loss: said as such, before the release, so that
			// a log of several replicas never shows two holders at once.
			k.change(false, time.Time{}, func() { k.log.Info("lease given up: this replica stops", "owner", k.cfg.Owner) })
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := k.leases.Release(rctx, k.source, k.cfg.Owner); err != nil {
				k.log.Warn("could not release the lease; a standby takes over when it expires", "err", err)
			} else {
				k.log.Debug("lease released", "owner", k.cfg.Owner)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}

// renew takes or extends the lease. When NATS cannot be reached the lease
// is kept only until our own view of its expiry, never longer.
func (k *leaseKeeper) renew(ctx context.Context) bool {
	now := k.now()
	ok, err := k.leases.Acquire(ctx, k.source, k.cfg.Owner, k.cfg.TTL, now)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("cannot renew the lease", "err", err)
		}
		k.mu.Lock()
		still := k.owned && now.Before(k.validUntil)
		until := k.validUntil
		k.mu.Unlock()
		k.set(still, until)
		return still
	}
	k.set(ok, now.Add(k.cfg.TTL))
	return ok
}

func (k *leaseKeeper) set(owned bool, until time.Time) {
	k.change(owned, until, func() {
		if owned {
			k.log.Info("lease taken: this replica polls the source", "owner", k.cfg.Owner)
		} else {
			k.log.Info("lease not held: another replica polls the source", "owner", k.cfg.Owner)
		}
	})
}

// change records the lease's state; report says so when ownership changes.
func (k *leaseKeeper) change(owned bool, until time.Time, report func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if owned != k.owned {
		report()
		if !owned {
			if k.cancelRun != nil {
				k.cancelRun()
			}
		}
		close(k.wake)
		k.wake = make(chan struct{})
	}
	k.owned, k.validUntil = owned, until
}

func (k *leaseKeeper) isOwned() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.owned
}

// waitOwned blocks until this replica holds the lease or ctx ends.
func (k *leaseKeeper) waitOwned(ctx context.Context) bool {
	for {
		k.mu.Lock()
		owned, wake := k.owned, k.wake
		k.mu.Unlock()
		if owned {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		}
	}
}

// runContext derives the context of one run: cancelled if the lease is lost.
func (k *leaseKeeper) runContext(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithCancel(ctx)
	k.mu.Lock()
	k.cancelRun = cancel
	owned := k.owned
	k.mu.Unlock()
	if !owned {
		cancel()
	}
	return rctx, func() {
		k.mu.Lock()
		k.cancelRun = nil
		k.mu.Unlock()
		cancel()
	}
}

// confirm renews the lease right before a commit, so that a replica that
// lost it (or cannot prove it still holds it) writes nothing.
func (k *leaseKeeper) confirm(ctx context.Context) bool { return k.renew(ctx) }
