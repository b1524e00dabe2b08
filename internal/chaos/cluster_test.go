package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
)

// TestClusterNodeLoss stops one node of a three-node cluster while the
// poller publishes and the notifier delivers, keeps the directory changing,
// then restarts the node: nothing lost, nothing doubled, both services keep
// working, and the restarted node catches up (SPEC §6, issue 4 item 3).
func TestClusterNodeLoss(t *testing.T) {
	for _, victim := range []string{"follower", "stream leader", "consumer leader"} {
		t.Run(victim, func(t *testing.T) {
			start := time.Now()
			c := natstest.StartCluster(t, 3)
			d, api, rc, hook := startAPIs(t, 60)
			p := startPipeline(t, c.URLs(), 3, api, hook)
			o := observe(t, c.URLs())
			o.seeded(t)

			ctx, stopChanges := context.WithCancel(context.Background())
			changing := make(chan struct{})
			go func() { defer close(changing); d.run(ctx, 100*time.Millisecond, o) }()
			t.Cleanup(func() { stopChanges(); <-changing })
			testutil.CheckFor(t, 20*time.Second, "deliveries before the fault", func() error {
				if n := rc.count(); n < 15 {
					return fmt.Errorf("%d delivered", n)
				}
				return nil
			})

			leader := streamLeader(t, o)
			if victim == "consumer leader" {
				// The webhook consumer's leader, deliveries in flight:
				// pulls lost with it come back only after the ack wait,
				// and each user's events must still arrive in order.
				leader = consumerLeader(t, o, "webhook")
			}
			i := pickVictim(c, victim != "follower", leader)
			t.Logf("stream leader %s; stopping %s", leader, c.Name(i))
			c.Stop(i)
			stopped := time.Now()

			// Both services keep working on two nodes: new changes are
			// published and delivered while the node is down.
			before, stepsBefore := rc.count(), d.stepsMade()
			testutil.CheckFor(t, 20*time.Second, "deliveries with a node down", func() error {
				p.running(t)
				if n := rc.count(); n < before+60 || d.stepsMade() < stepsBefore+30 {
					return fmt.Errorf("%d delivered since the stop, %d steps", n-before, d.stepsMade()-stepsBefore)
				}
				return nil
			})
			down := time.Since(stopped)

			c.Restart(i)
			restarted := c.Server(i)
			time.Sleep(time.Second) // changes go on after the restart
			stopChanges()
			<-changing

			f := settled(t, o, d, rc, 30*time.Second)
			p.running(t)

			// The restarted node holds every message, as its own store says.
			testutil.CheckFor(t, 20*time.Second, c.Name(i)+" caught up", func() error {
				return caughtUp(c, restarted)
			})
			t.Logf("%s down %.1fs: %d steps, %d role flips, %d events expected, %d on the stream, %d delivered; lost %d, duplicates on the stream %d, duplicate deliveries %d (%.1fs)",
				c.Name(i), down.Seconds(), f.steps, f.flips, f.expected, f.onStream, f.delivered, f.lost, f.streamDups, f.deliveryDups, time.Since(start).Seconds())
		})
	}
}

// streamLeader names the node leading the event stream.
func streamLeader(t *testing.T, o *observer) string {
	t.Helper()
	var leader string
	testutil.CheckFor(t, 10*time.Second, "a stream leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := o.js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no leader")
		}
		if len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("%d replicas beside the leader, want 2", len(info.Cluster.Replicas))
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader
}

// pickVictim returns the stream leader, or else a follower, preferring one
// a service is connected to so that the client must move as well.
func consumerLeader(t *testing.T, o *observer, name string) string {
	t.Helper()
	var leader string
	testutil.CheckFor(t, 10*time.Second, "a consumer leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := o.js.Consumer(ctx, bus.EventsStream, name)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no leader")
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader
}

func pickVictim(c *natstest.Cluster, wantLeader bool, leader string) int {
	if wantLeader {
		return c.Index(leader)
	}
	victim := -1
	for i := 0; i < c.N(); i++ {
		if c.Name(i) == leader {
			continue
		}
		if victim < 0 {
			victim = i
		}
		if s := c.Server(i); s != nil {
			if cz, err := s.Connz(&server.ConnzOptions{}); err == nil {
				for _, ci := range cz.Conns {
					if ci.Name == "rollcall-poller" || ci.Name == "rollcall-notifier" {
						return i
					}
				}
			}
		}
	}
	return victim
}

// caughtUp checks that s stores the same event stream and users bucket as
// every other node.
func caughtUp(c *natstest.Cluster, s *server.Server) error {
	for _, name := range []string{bus.EventsStream, "KV_" + bus.UsersBucket} {
		mine, ok := natstest.LocalStream(s, name)
		if !ok {
			return fmt.Errorf("%s: no replica of %s", s.Name(), name)
		}
		for _, other := range c.Servers() {
			if other == s {
				continue
			}
			theirs, ok := natstest.LocalStream(other, name)
			if !ok {
				return fmt.Errorf("%s: no replica of %s", other.Name(), name)
			}
			if mine.Msgs != theirs.Msgs || mine.LastSeq != theirs.LastSeq {
				return fmt.Errorf("%s: %s has %d messages up to %d, %s has %d up to %d",
					name, s.Name(), mine.Msgs, mine.LastSeq, other.Name(), theirs.Msgs, theirs.LastSeq)
			}
		}
	}
	return nil
}
