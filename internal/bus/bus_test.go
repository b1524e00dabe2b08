package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

func evs(t *testing.T, users, perUser int) []events.Event {
	t.Helper()
	var out []events.Event
	for u := range users {
		for k := range perUser {
			ev, err := events.New(events.Spec{Type: events.Types[k], PrevRevision: uint64(k),
				User:     events.User{Source: "vpp", SourceKind: events.KindVPP, ID: fmt.Sprint(u), Status: "registered"},
				Observed: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev)
		}
	}
	return out
}

// A publish that fails (here: the stream is not there yet, as during a
// leader election) is retried with the same ids within the run.
func TestPublishRetriesWithSameIDs(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t))
	ctx := context.Background()
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = js.CreateOrUpdateStream(ctx, bus.StreamConfig(bus.Config{}))
	}()
	res, err := bus.Publish(ctx, js, evs(t, 10, 2))
	if err != nil {
		t.Fatalf("publish did not recover: %v", err)
	}
	if res.Stored != 20 {
		t.Fatalf("stored %d, want 20", res.Stored)
	}
	// Publishing the same events again stores nothing new.
	again, err := bus.Publish(ctx, js, evs(t, 10, 2))
	if err != nil || again.Stored != 0 || again.Duplicates != 20 {
		t.Fatalf("republish: %+v %v", again, err)
	}
}

// Each user's events reach the stream in their order even though users'
// events are published concurrently.
func TestPublishKeepsPerUserOrder(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t))
	ctx := context.Background()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	in := evs(t, 50, 3)
	if _, err := bus.Publish(ctx, js, in); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, bus.EventsStream)
	last := map[string]int{}
	for seq := uint64(1); seq <= uint64(len(in)); seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		user, typ := m.Header.Get("ce-subject"), m.Header.Get("ce-type")
		idx := map[string]int{events.TypeRegistered: 1, events.TypeAssociated: 2, events.TypeRetired: 3}[typ]
		if idx <= last[user] {
			t.Fatalf("user %s: %s stored after a later event", user, typ)
		}
		last[user] = idx
	}
}
