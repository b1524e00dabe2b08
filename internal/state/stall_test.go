package state

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestWatchesGiveUpWhenTheServerIsGone: found by the randomized
// simulation. A NATS restart swallowed the request that creates a KV
// watch; nats.go waits for its answer as long as the context allows, and a
// poller run's context has no deadline: the poller hung for good, both
// sources silent. Every watch must fail within StallTimeout instead.
func TestWatchesGiveUpWhenTheServerIsGone(t *testing.T) {
	defer func(d time.Duration) { StallTimeout = d }(StallTimeout)
	StallTimeout = 300 * time.Millisecond
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.ConnectURL(t, srv.ClientURL(), natstest.Reconnecting...)
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "vpp")
	x := NewIndex(0)
	if err := users.Commit(ctx, []diff.Write{{User: events.User{Source: "vpp", SourceKind: "vpp", ID: "1", Status: "registered"}}}, x); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	for name, call := range map[string]func() error{
		"Valid":     func() error { _, err := users.Valid(ctx, x); return err },
		"LoadIndex": func() error { _, err := users.LoadIndex(ctx); return err },
		"Load":      func() error { _, err := users.Load(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- call() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("no error with the server gone")
				}
				if errors.Is(err, context.Canceled) {
					t.Fatalf("unexpected error %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still waiting 5s after the server went away")
			}
		})
	}
}

// The bound on creating a watch must not end the watch: a load that
// outlasts it (here, thousands of users) still gets every user.
func TestLoadsOutliveTheWatchCreationBound(t *testing.T) {
	defer func(d time.Duration) { StallTimeout = d }(StallTimeout)
	StallTimeout = time.Second
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "veeam")
	var writes []diff.Write
	for i := range 4000 {
		writes = append(writes, diff.Write{User: events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: strconv.Itoa(i), Status: "enabled"}})
	}
	x := NewIndex(0)
	if err := users.Commit(ctx, writes, x); err != nil {
		t.Fatal(err)
	}
	if ok, err := users.Valid(ctx, x); err != nil || !ok {
		t.Fatalf("valid after 4000 own writes: %v %v", ok, err)
	}
	y, err := users.LoadIndex(ctx)
	if err != nil || y.Len() != 4000 {
		t.Fatalf("index of %d users: %v", y.Len(), err)
	}
	all, err := users.Load(ctx)
	if err != nil || len(all) != 4000 {
		t.Fatalf("load of %d users: %v", len(all), err)
	}
}
