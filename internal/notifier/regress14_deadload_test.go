package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
)

// TestDeadLetterLoadOutlastsAnElection (found by the compose test of issue
// 14): a notifier that starts while the cluster is still electing the
// dead-letter stream's leader got no answer to its first read of the
// stream and stopped ("dead letters: read from sequence 1: context
// deadline exceeded"), though a moment later the same read answers at
// once. Each read is now sent again until it is answered. Here two of
// three nodes are down while the notifier loads, and come back.
func TestDeadLetterLoadOutlastsAnElection(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(c.URL(0), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bus.EnsureDeadLetter(ctx, js, 3); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(bus.DeadLetterPrefix + "hook")
	m.Header.Set(jetstream.MsgIDHeader, "dead-1")
	m.Data = []byte("{}")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	c.Stop(1)
	c.Stop(2)
	loaded := make(chan error, 1)
	d := deadSet{ids: map[string]struct{}{}}
	go func() {
		lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
		defer lcancel()
		loaded <- d.load(lctx, js)
	}()
	// Longer than one attempt (bus.EnsureAttemptTimeout), so the first is
	// lost for sure.
	time.Sleep(2 * bus.EnsureAttemptTimeout)
	c.Restart(1)
	c.Restart(2)
	if err := <-loaded; err != nil {
		t.Fatalf("the load gave up: %v", err)
	}
	if !d.has("dead-1") {
		t.Fatal("the dead letter was not loaded")
	}
}
