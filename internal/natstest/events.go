package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/pkg/events"
)

// Events reads the whole event stream (ROLLCALL_EVENTS), in order, as the
// CloudEvents it holds.
func Events(t testing.TB, js jetstream.JetStream) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.FromHeaders(events.Headers(m.Header), m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, e)
	}
	return out
}
