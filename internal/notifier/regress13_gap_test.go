package notifier

// Adversarial review of issue 13, point 11: the gate when the consumer's
// delivery sequence skips. Real messages of a real consumer; the test
// plays the pull loop and loses deliveries on their way, as
// TestLostDeliveryIsWaitedFor does. Not parallel (see
// TestDeadLetterMsgIDDeterministic).

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

func regress13Setup(t *testing.T, ackWait time.Duration, users ...string) (jetstream.JetStream, jetstream.Consumer, []events.Event) {
	t.Helper()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	var evs []events.Event
	for i, user := range users {
		e, err := events.New(events.Spec{Type: events.TypeUpdated, PrevRevision: uint64(i), Reason: events.ReasonFields, Observed: time.Now(),
			User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: user, Email: user + "@x"}})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	// One at a time: the stream keeps this order.
	for _, e := range evs {
		if _, err := bus.Publish(ctx, js, []events.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := js.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "gap", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: ackWait, MaxDeliver: -1})
	if err != nil {
		t.Fatal(err)
	}
	return js, c, evs
}

func regress13Fetch(t *testing.T, c jetstream.Consumer, k int) []jetstream.Msg {
	t.Helper()
	b, err := c.Fetch(k, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	if len(out) != k {
		t.Fatalf("fetched %d messages, want %d", len(out), k)
	}
	return out
}

func regress13Before(t *testing.T, sink *orderSink, n int, first, second events.Event) {
	t.Helper()
	testutil.CheckFor(t, 15*time.Second, "every event delivered", func() error {
		if len(sink.sent()) < n {
			return context.DeadlineExceeded
		}
		return nil
	})
	got := sink.sent()
	if slices.Index(got, first.ID()) > slices.Index(got, second.ID()) {
		t.Fatalf("user %s's later event %s was delivered before its earlier one %s (lost on its way and sent again): %v",
			first.Subject(), second.ID(), first.ID(), got)
	}
}

// The run's very first delivery is lost on its way (a failover right as the
// notifier starts pulling). The next one, the same user's later event,
// skips a delivery sequence just as well, but dispatch ignores a skip while
// lastSeq is 0, so it goes out first.
func TestRegress13FirstDeliveryOfRunLost(t *testing.T) {
	const ackWait = 500 * time.Millisecond
	js, c, evs := regress13Setup(t, ackWait, "u", "u")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sink := &orderSink{}
	n := New(js, Config{AckWait: ackWait, Schedule: []time.Duration{10 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	p := n.newPump(ctx, sink, n.log)
	defer p.close()
	p.gate(c) // as receive does before consuming: nothing pending yet
	first := regress13Fetch(t, c, 2)
	// first[0], u's first event, is lost on its way.
	p.dispatch(first[1], consumerEpoch(c), c)
	again := regress13Fetch(t, c, 1) // the lost one, after the ack wait
	p.dispatch(again[0], consumerEpoch(c), c)
	regress13Before(t, sink, 2, evs[0], evs[1])
}

// A second delivery lost while the pump is already gated for a first one:
// the gate keeps the first loss's deadline (its ack wait plus 5 s), so when
// the second loss happens more than 5 s after the first, the gate lifts
// before it comes back, and that user's later event overtakes it.
func TestRegress13SecondLossDuringGate(t *testing.T) {
	const ackWait = 7 * time.Second
	js, c, evs := regress13Setup(t, ackWait, "v", "u", "u", "w", "w")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := &orderSink{}
	n := New(js, Config{AckWait: ackWait, Schedule: []time.Duration{10 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	p := n.newPump(ctx, sink, n.log)
	defer p.close()
	p.gate(c)
	b1 := regress13Fetch(t, c, 3) // v, u1, u2
	p.dispatch(b1[0], consumerEpoch(c), c)
	// b1[1], u1, is lost on its way; u2 gates the pump.
	p.dispatch(b1[2], consumerEpoch(c), c)
	time.Sleep(5500 * time.Millisecond)
	b2 := regress13Fetch(t, c, 2) // w1, w2
	// b2[0], w1, is lost on its way too.
	p.dispatch(b2[1], consumerEpoch(c), c)
	u1 := regress13Fetch(t, c, 1) // u1 back after its ack wait
	p.dispatch(u1[0], consumerEpoch(c), c)
	w1 := regress13Fetch(t, c, 1) // w1 back after its ack wait
	p.dispatch(w1[0], consumerEpoch(c), c)
	regress13Before(t, sink, 5, evs[3], evs[4])
	regress13Before(t, sink, 5, evs[1], evs[2])
}
