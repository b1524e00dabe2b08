// Review 16b: on a three-node cluster (R3 stream and consumer) a sink
// created with SINK_START=new missed 40–80 of 300 events published right
// after the consumer was created — first reported as a loss at a consumer
// leader change, since the test changed the leader meanwhile. The events
// lost were the first rounds: a replicated consumer's DeliverNewPolicy is
// fixed by its leader when it takes the consumer up, after CreateConsumer
// has returned. The notifier now fixes "new" itself, at the stream's last
// sequence (DeliverByStartSequencePolicy). These tests, with consumer
// leader changes and the leader's node lost, pass since.

package notifier_test

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
