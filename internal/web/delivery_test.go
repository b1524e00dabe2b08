package web

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestDeliveryStatus: what the timeline says a sink did with an event,
// from the sink's consumer (filter, start, ack floor) and its dead letters.
func TestDeliveryStatus(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ev := func(seq uint64, subj string) EventRef {
		return EventRef{Seq: seq, ID: subj, Subject: "rollcall.events.vpp.1." + subj, Stored: t0.Add(time.Duration(seq) * time.Minute)}
	}
	all := sinkView{Sink: Sink{Name: "webhook"}, Found: true, AckFloor: 10, Policy: jetstream.DeliverAllPolicy}
	retired := all
	retired.Filters = []string{"rollcall.events.*.*.user.retired"}
	late := all
	late.Policy, late.Created = jetstream.DeliverNewPolicy, t0.Add(5*time.Minute)
	dead := map[deadKey]bool{{"webhook", "user.registered"}: true}
	for _, c := range []struct {
		name string
		v    sinkView
		ev   EventRef
		want string
	}{
		{"acked", all, ev(3, "user.updated"), stDelivered},
		{"above the ack floor", all, ev(11, "user.updated"), stPending},
		{"dead letter", all, ev(3, "user.registered"), stDead},
		{"filtered out", retired, ev(3, "user.updated"), stFiltered},
		{"filter takes it", retired, ev(3, "user.retired"), stDelivered},
		{"before a new sink began", late, ev(3, "user.updated"), stNotSent},
		{"after a new sink began", late, ev(7, "user.updated"), stDelivered},
		{"no consumer", sinkView{Sink: Sink{Name: "webhook"}}, ev(3, "user.updated"), stUnknown},
	} {
		if got := c.v.status(c.ev, dead); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
