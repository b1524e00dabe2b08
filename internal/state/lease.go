package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease is a source's poller lease in rollcall_sources: the replica that
// holds an unexpired lease is the only one that polls the source.
type Lease struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// Leases takes and renews leases with compare-and-set, so two replicas
// never both believe they hold one.
type Leases struct{ kv jetstream.KeyValue }

// NewLeases wraps the rollcall_sources bucket.
func NewLeases(kv jetstream.KeyValue) *Leases { return &Leases{kv: kv} }

func leaseKey(source string) string { return source + ".lease" }

// Acquire takes or renews source's lease for owner until now+ttl. It
// reports whether owner holds the lease afterwards; another replica's
// unexpired lease is not an error. Expiry is judged by the caller's clock,
// so replicas' clocks must agree to well within ttl (NTP); should they not,
// compare-and-set on every state write still keeps the data consistent.
func (l *Leases) Acquire(ctx context.Context, source, owner string, ttl time.Duration, now time.Time) (bool, error) {
	key := leaseKey(source)
	val, err := json.Marshal(Lease{Owner: owner, Expires: now.Add(ttl)})
	if err != nil {
		return false, err
	}
	e, err := l.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = l.kv.Create(ctx, key, val)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil // another replica was faster
		}
		if err != nil {
			return false, fmt.Errorf("take lease of %s: %w", source, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read lease of %s: %w", source, err)
	}
	var cur Lease
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		cur = Lease{} // unreadable: treat as expired and take it over
	}
	if cur.Owner != owner && now.Before(cur.Expires) {
		return false, nil
	}
	_, err = l.kv.Update(ctx, key, val, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("renew lease of %s: %w", source, err)
	}
	return true, nil
}

// Release gives up owner's lease at once, so that a standby replica takes
// over without waiting for it to expire.
func (l *Leases) Release(ctx context.Context, source, owner string) error {
	e, err := l.kv.Get(ctx, leaseKey(source))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}
	var cur Lease
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Owner != owner {
		return nil
	}
	val, _ := json.Marshal(Lease{Owner: owner})
	_, err = l.kv.Update(ctx, leaseKey(source), val, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	return err
}

// Holder returns the current lease of source (zero if none).
func (l *Leases) Holder(ctx context.Context, source string) (Lease, error) {
	e, err := l.kv.Get(ctx, leaseKey(source))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Lease{}, nil
	}
	if err != nil {
		return Lease{}, err
	}
	var cur Lease
	err = json.Unmarshal(e.Value(), &cur)
	return cur, err
}
