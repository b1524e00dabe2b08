package poller_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// The poller keeps a compact index of the users between runs. When another
// writer changes the source's users in the KV meanwhile (a replica that held
// the lease, an operator), the next run must see it: here the KV says one
// role, the directory the old one, so the run reports the move back.
func TestRunAfterAForeignWriteReadsTheKV(t *testing.T) {
	e := setup(t, poller.Config{})
	ctx := context.Background()
	e.run(t, "veeam") // seed, and the index is loaded
	users := state.NewUsers(e.h.Users, "veeam")
	all, err := users.Load(ctx)
	if err != nil || len(all) == 0 {
		t.Fatalf("load: %d users, %v", len(all), err)
	}
	var id string
	for id = range all {
		break
	}
	other := all[id]
	other.User.Role = "PortalOperator"
	if err := users.Apply(ctx, []diff.Write{{User: other.User, Revision: other.Revision}}); err != nil {
		t.Fatal(err)
	}
	res := e.run(t, "veeam")
	if res.Events != 1 || res.Writes != 1 {
		t.Fatalf("run after a foreign write: %+v, want the role change back", res)
	}
	if got := e.streamTypes(t); len(got) != 1 || got[0] != events.TypeRoleChanged+"/"+id {
		t.Fatalf("events %v, want %s/%s", got, events.TypeRoleChanged, id)
	}
	if n := e.p.KnownUsers(); n != len(all) {
		t.Fatalf("the poller knows %d users, want %d", n, len(all))
	}
}

// With a lease (several replicas), a run over an unchanged directory writes
// nothing either: the lease is confirmed only before a commit, and renewed
// on its own schedule (every third of its TTL).
func TestUnchangedRunsWithALeaseWriteNothing(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	fake := veeamtest.NewServer("api-key", veeamtest.FixtureUsers()...)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: srv.URL, Token: "api-key", Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	src := &counting{Source: c}
	p := poller.New(js, h, poller.Config{Lease: poller.LeaseConfig{Owner: "a", TTL: time.Hour}},
		poller.SourceConfig{Source: src, Interval: 10 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	defer func() { cancel(); <-done }()
	checkFor(t, 5*time.Second, "the seed run", func() bool { return !p.Health()["veeam"].LastSuccess.IsZero() })
	seq := func() uint64 {
		s, err := js.Stream(ctx, "KV_"+bus.SourcesBucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	before, polled := seq(), src.n.Load()
	checkFor(t, 5*time.Second, "three more runs", func() bool { return src.n.Load() >= polled+3 })
	// The run in progress may still be in its commit; wait for the health
	// of a completed one.
	last := p.Health()["veeam"].LastSuccess
	checkFor(t, 5*time.Second, "a completed run", func() bool { return p.Health()["veeam"].LastSuccess.After(last) })
	if after := seq(); after != before {
		t.Fatalf("unchanged runs wrote %d times to %s", after-before, bus.SourcesBucket)
	}
}
