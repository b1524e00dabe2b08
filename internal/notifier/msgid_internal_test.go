package notifier

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// Every publish of one dead-lettering carries the same message id, so the
// dead-letter stream keeps one copy: a publish retried in process, and the
// message delivered again (a crash or a lost Term after the dead letter was
// stored). A new incarnation of the consumer, or the event stored again on
// the event stream, is a new dead-lettering with a new id.
//
// Not parallel: a test of this package paused in t.Parallel would count as
// a notifier goroutine left behind for TestRunLeavesNoGoroutines.
func TestDeadLetterMsgIDDeterministic(t *testing.T) {
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureDeadLetter(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	e, err := events.New(events.Spec{Type: events.TypeUpdated, User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "u1"},
		Reason: events.ReasonFields, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	n := New(js, Config{})
	fetch := func(c jetstream.Consumer) held {
		t.Helper()
		b, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range b.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			return held{msg: msg, meta: meta, epoch: consumerEpoch(c)}
		}
		t.Fatalf("no message: %v", b.Error())
		return held{}
	}
	count := func() uint64 {
		t.Helper()
		st, err := js.Stream(ctx, bus.DeadLetterStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	consumer := func() jetstream.Consumer {
		t.Helper()
		c, err := js.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "s", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := consumer()
	h := fetch(c)
	if h.epoch == 0 {
		t.Fatal("consumer epoch is 0")
	}
	for range 2 { // the first publish's reply lost: published again
		if err := n.publishDeadLetter("s", h, e.ID(), "permanent failure", 400, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(); got != 1 {
		t.Fatalf("%d dead letters after a repeated publish, want 1", got)
	}
	// Crashed before the Term: the message comes again, is attempted again
	// and dead-lettered again; that is the same dead-lettering.
	if err := h.msg.Nak(); err != nil {
		t.Fatal(err)
	}
	h2 := fetch(c)
	if h2.meta.NumDelivered != 2 {
		t.Fatalf("redelivery NumDelivered %d", h2.meta.NumDelivered)
	}
	if err := n.publishDeadLetter("s", h2, e.ID(), "permanent failure", 400, 2); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 {
		t.Fatalf("%d dead letters after a redelivery, want 1", got)
	}
	// The consumer created anew (a replay to the sink): a new dead letter.
	if err := js.DeleteConsumer(ctx, bus.EventsStream, "s"); err != nil {
		t.Fatal(err)
	}
	h3 := fetch(consumer())
	if h3.epoch == h.epoch {
		t.Fatal("a new consumer has the old epoch")
	}
	if err := n.publishDeadLetter("s", h3, e.ID(), "permanent failure", 400, 1); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 2 {
		t.Fatalf("%d dead letters after a new consumer, want 2", got)
	}
	if got, want := DeadLetterMsgID(e.ID(), "s", 1, h3.epoch), DeadLetterMsgID(e.ID(), "s", 1, h.epoch); got == want {
		t.Errorf("ids %q and %q for different epochs", got, want)
	}
	if got := DeadLetterMsgID("", "s", 7, 9); got != "undecodable.s.7.9" {
		t.Errorf("undecodable id %q", got)
	}
}

// DeadLetterMsgID is built by hand for speed; the ids of dead letters
// already on the stream were made with fmt, and must still match.
func TestDeadLetterMsgIDMatchesItsFormat(t *testing.T) {
	for _, c := range []struct {
		name, id, sink string
		seq            uint64
		epoch          int64
	}{
		{"typical", "01JABCDEF", "webhook", 42, 1764892800000000000},
		{"zero", "x", "s", 0, 0},
		{"largest", "id", "slack", math.MaxUint64, math.MaxInt64},
		{"negative epoch", "id", "s", 1, -5},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := fmt.Sprintf("%s.%s.%d.%d", c.id, c.sink, c.seq, c.epoch)
			if got := DeadLetterMsgID(c.id, c.sink, c.seq, c.epoch); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
