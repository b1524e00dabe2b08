//go:build openbreaks

package notifier_test

// Review 16b break: a change of the events consumer's leader in a
// three-node cluster (R3 stream and consumer) loses events. After one
// consumer leader stepdown (JS API CONSUMER.LEADER.STEPDOWN, no node lost,
// the client's connection untouched) while the notifier delivers 300 events
// of 20 users, the receiver never gets a block of them (80 of 300 in one
// run, every user's events of some rounds): the stream still holds all 300,
// but the consumer reports delivered {consumer 220, stream 300}, ack floor
// {220, 300}, nothing pending, nothing ack-pending, nothing redelivered.
// The new leader skipped those stream sequences: they were never handed to
// the notifier and count as acknowledged, so they are lost, not late
// (SPEC section 6: a NATS node lost from a three-node cluster loses no
// event; losing the leader's node, as in the second test, does the same).
//
// It is NOT caused by the batched acks of 66c7f59: the same tests fail on
// 484fc10 (before batching, each ack a DoubleAck), 20 of 300 lost there.
// The cause is on the consumer side of a leader change (the notifier's pull
// consumer against nats-server v2.15.2's replicated consumer state), not
// in the notifier's ack path; it is reported here because the issue 16
// review found it. Run: go test -tags openbreaks -run TestReview16bBreak ./internal/notifier

import (
	"context"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
)

func TestReview16bBreakConsumerStepdownLosesEvents(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	c.WaitReady()
	nc, js := natstest.ConnectURL(t, c.URL(0), natstest.Reconnecting...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	review16bRun(t, js, "r16bsd", func() { review16bStepDown(t, nc, js, "r16bsd") })
}

// The consumer's leader changes, without the client's connection being
// re-established, while acks are batched: repeated leader stepdowns and
// then the leader's node lost from the three-node cluster. A batch whose
// earlier acks went to the old leader and whose last ack was answered by
// the new one would be confirmed though the earlier acks were lost, and
// those events delivered again after the ack wait, out of order.
func TestReview16bBreakLeaderChangesAndNodeLossLoseEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	c := natstest.StartCluster(t, 3)
	c.WaitReady()
	nc, js := natstest.ConnectURL(t, c.URL(0), natstest.Reconnecting...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	const name = "r16bleader"
	review16bRun(t, js, name, func() {
		for range 3 {
			review16bStepDown(t, nc, js, name)
		}
		// Lose the leader's node, unless it is the one the client uses
		// (then a reconnect covers the batch anyway): step down until not.
		for c.Index(consumerInfo(t, js, name).Cluster.Leader) == 0 {
			review16bStepDown(t, nc, js, name)
		}
		c.Stop(c.Index(consumerInfo(t, js, name).Cluster.Leader))
	})
}
