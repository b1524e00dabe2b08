package notifier

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// orderSink records the ids it is sent, in order.
type orderSink struct {
	mu  sync.Mutex
	ids []string
}

func (s *orderSink) Name() string { return "gap" }
func (s *orderSink) Send(_ context.Context, e events.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, e.ID())
	return nil
}

func (s *orderSink) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// TestLostDeliveryIsWaitedFor is point 11 of issue 13. A delivery lost on
// its way (a pull that went down with a NATS node) comes back only after
// the ack wait, while the same user's next event arrives at once: the
// pump used to gate only after a failed pull, and delivered the later
// event first. The consumer's delivery sequence skips the lost one; the
// pump now holds back from that moment until it is back. Real messages of
// a real consumer; the test plays the pull loop and loses the middle one.
//
// Not parallel: see TestDeadLetterMsgIDDeterministic.
func TestLostDeliveryIsWaitedFor(t *testing.T) {
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	var evs []events.Event
	for i, user := range []string{"v", "u", "u"} {
		e, err := events.New(events.Spec{Type: events.TypeUpdated, PrevRevision: uint64(i), Reason: events.ReasonFields, Observed: time.Now(),
			User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: user, Email: user + "@x"}})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if _, err := bus.Publish(ctx, js, evs); err != nil {
		t.Fatal(err)
	}
	const ackWait = 500 * time.Millisecond
	c, err := js.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "gap", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: ackWait, MaxDeliver: -1})
	if err != nil {
		t.Fatal(err)
	}
	sink := &orderSink{}
	n := New(js, Config{AckWait: ackWait, Schedule: []time.Duration{10 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	p := n.newPump(ctx, sink, n.log)
	defer p.close()
	fetch := func(k int) []jetstream.Msg {
		t.Helper()
		b, err := c.Fetch(k, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		return out
	}
	first := fetch(3)
	if len(first) != 3 {
		t.Fatalf("fetched %d messages, want 3", len(first))
	}
	p.dispatch(first[0], consumerEpoch(c), c) // v: delivered
	// first[1], u's first event, is lost on its way: never dispatched.
	p.dispatch(first[2], consumerEpoch(c), c) // u's second: must wait
	again := fetch(1)                         // the lost one, after the ack wait
	if len(again) != 1 {
		t.Fatalf("the lost delivery did not come back")
	}
	p.dispatch(again[0], consumerEpoch(c), c)
	testutil.CheckFor(t, 10*time.Second, "all three delivered", func() error {
		if len(sink.sent()) < 3 {
			return context.DeadlineExceeded
		}
		return nil
	})
	got := sink.sent()
	if slices.Index(got, evs[1].ID()) > slices.Index(got, evs[2].ID()) {
		t.Fatalf("user u's second event was delivered before its first (lost on its way and sent again): %v", got)
	}
}
