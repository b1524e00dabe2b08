package poller_test

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/state"
)

// counting records how often a replica asked its source for a snapshot.
type counting struct {
	poller.Source
	n atomic.Int64
}

func (c *counting) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	c.n.Add(1)
	return c.Source.Snapshot(ctx, req)
}

// Two replicas against one source: only the lease holder polls, no event
// is doubled, and when the holder stops the other takes over.
func TestTwoReplicasShareOneSource(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	fake := veeamtest.NewServer("api-key")
	for i := range 20 {
		fake.Put(veeamUser(i))
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	const ttl = 300 * time.Millisecond
	replica := func(owner string) (*poller.Poller, *counting) {
		c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: srv.URL, Token: "api-key", Backoff: fast})
		if err != nil {
			t.Fatal(err)
		}
		src := &counting{Source: c}
		return poller.New(js, h, poller.Config{Lease: poller.LeaseConfig{Owner: owner, TTL: ttl}},
			poller.SourceConfig{Source: src, Interval: 20 * time.Millisecond}), src
	}
	pa, ca := replica("replica-a")
	pb, cb := replica("replica-b")
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- pa.Run(ctxA) }()
	// Start B only once A holds the lease, so we know who is active.
	leases := state.NewLeases(h.Sources)
	checkFor(t, 5*time.Second, "replica A to take the lease", func() bool {
		l, err := leases.Holder(context.Background(), "veeam")
		return err == nil && l.Owner == "replica-a"
	})
	go func() { doneB <- pb.Run(ctxB) }()
	defer func() { stopB(); <-doneB }()

	checkFor(t, 5*time.Second, "replica A polling", func() bool { return ca.n.Load() >= 3 })
	checkFor(t, 5*time.Second, "replica B standing by", func() bool { return pb.Health()["veeam"].State == poller.StateStandby })
	// Changes while both run: each is published once.
	for i := range 5 {
		u := veeamUser(i)
		u.Role = "CompanyOwner"
		fake.Put(u)
	}
	checkFor(t, 5*time.Second, "five role changes", func() bool { return streamCount(t, js) == 5 })
	before := ca.n.Load()
	checkFor(t, 5*time.Second, "more polls by A", func() bool { return ca.n.Load() >= before+5 })
	if n := cb.n.Load(); n != 0 {
		t.Fatalf("the standby replica polled %d times while the active one held the lease", n)
	}

	stopA()
	<-doneA
	stopped := time.Now()
	checkFor(t, 2*ttl+time.Second, "replica B takes over", func() bool { return cb.n.Load() > 0 })
	if took := time.Since(stopped); took > 2*ttl {
		t.Errorf("takeover took %v, more than two lease periods (%v)", took, 2*ttl)
	}
	lease, err := leases.Holder(context.Background(), "veeam")
	if err != nil || lease.Owner != "replica-b" {
		t.Fatalf("lease holder %+v, %v", lease, err)
	}
	for i := 5; i < 8; i++ {
		fake.Remove(veeamUser(i).InstanceUID)
	}
	checkFor(t, 5*time.Second, "three removals after the takeover", func() bool { return streamCount(t, js) == 8 })
	// A few more runs by B must add nothing.
	polled := cb.n.Load()
	checkFor(t, 5*time.Second, "three more polls by B", func() bool { return cb.n.Load() >= polled+3 })
	if n := streamCount(t, js); n != 8 {
		t.Fatalf("stream holds %d events, want 8", n)
	}
}

func streamCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// blocking is a source whose snapshot waits until released, so a test can
// act in the middle of a run.
type blocking struct {
	poller.Source
	entered chan struct{}
	release chan struct{}
}

func (b *blocking) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return sources.Snapshot{}, ctx.Err()
	}
	return b.Source.Snapshot(ctx, req)
}

// A replica whose lease is taken over while its run is in progress writes
// nothing: it neither publishes nor commits.
func TestLeaseLostMidRunWritesNothing(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t))
	ctx := context.Background()
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	fake := veeamtest.NewServer("api-key", veeamtest.FixtureUsers()...)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c, _ := veeam.New(veeam.Config{Name: "veeam", BaseURL: srv.URL, Token: "api-key", Backoff: fast})
	src := &blocking{Source: c, entered: make(chan struct{}, 1), release: make(chan struct{})}
	const ttl = 2 * time.Second
	p := poller.New(js, h, poller.Config{EmitInitial: true, Lease: poller.LeaseConfig{Owner: "slow", TTL: ttl}},
		poller.SourceConfig{Source: src, Interval: time.Hour})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	defer func() { cancel(); <-done }()

	<-src.entered // the run is fetching
	// Another replica takes the lease over (as after an expiry this one
	// missed, e.g. a long GC pause or a partition).
	leases := state.NewLeases(h.Sources)
	if ok, err := leases.Acquire(ctx, "veeam", "other", time.Hour, time.Now().Add(ttl+time.Second)); err != nil || !ok {
		t.Fatalf("take over: %v %v", ok, err)
	}
	close(src.release)
	checkFor(t, 5*time.Second, "the slow replica to stand by", func() bool { return p.Health()["veeam"].State == poller.StateStandby })
	if n := streamCount(t, js); n != 0 {
		t.Fatalf("a replica without the lease published %d events", n)
	}
	st, rev, err := state.NewSources(h.Sources).Get(ctx, "veeam")
	if err != nil || rev != 0 || st.Seeded {
		t.Fatalf("a replica without the lease wrote source state: %+v rev %d %v", st, rev, err)
	}
	if users, _ := state.NewUsers(h.Users, "veeam").Load(ctx); len(users) != 0 {
		t.Fatalf("a replica without the lease wrote %d users", len(users))
	}
}
