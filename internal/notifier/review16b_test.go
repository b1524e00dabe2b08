package notifier_test

// Adversarial review of issue 16 point 4 (delivery speed): lane goroutines
// reused through pump.idle (484fc10) and acks confirmed in batches
// (66c7f59, acks.go). Every attack here held; they stay as regressions.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

func review16bUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%02d", i)
		if i%5 == 0 {
			users[i] = "veeam:" + users[i]
		}
	}
	return users
}

// Waves of events across many users: between waves every lane empties and
// its goroutine waits on pump.idle, so the next wave's lanes are handed to
// waiting goroutines (and new ones started when none waits). No lane may be
// lost or run twice: every event exactly once, in order per user, acked
// without a single redelivery.
func TestReview16bWavesOverReusedLanesExactlyOnce(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	rc.delay = func(id string) time.Duration { return time.Duration(len(id)%3) * time.Millisecond }
	start(t, js, notifier.Config{}, notifier.Route{Sink: rc.sink(t, "r16bwaves")})
	evs := interleaved(t, review16bUsers(40), 12)
	const waves = 4
	per := len(evs) / waves
	for w := range waves {
		publish(t, js, evs[w*per:(w+1)*per]...)
		rc.waitAccepted(t, (w+1)*per, waitLong)
	}
	waitSettled(t, js, "r16bwaves")
	checkPerUser(t, "receiver", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
	if info := consumerInfo(t, js, "r16bwaves"); info.NumRedelivered != 0 || info.AckFloor.Stream != uint64(len(evs)) {
		t.Errorf("consumer: %d redelivered, ack floor %d; want 0 and %d", info.NumRedelivered, info.AckFloor.Stream, len(evs))
	}
}

// A lane handed to an idle goroutine just as its laneIdle (1 s) runs out:
// each next event comes about a second after the previous one was taken,
// on either side of the timeout. Not parallel: it checks that nothing of the
// notifier is left running after the stop.
func TestReview16bHandoffAtTheIdleTimeout(t *testing.T) {
	js := setup(t)
	rc := newReceiver(t)
	r := start(t, js, notifier.Config{ShutdownGrace: time.Second}, notifier.Route{Sink: rc.sink(t, "r16bedge")})
	var evs []events.Event
	gaps := []time.Duration{990, 1000, 1003, 1010, 995}
	for i, g := range gaps {
		e := mkEvent(t, "vpp", fmt.Sprintf("edge%d", i%2), events.TypeUpdated, uint64(i+1))
		evs = append(evs, e)
		publish(t, js, e)
		rc.waitAccepted(t, i+1, waitLong)
		// Pacing is the attack (hitting the idle timeout), not synchronisation.
		time.Sleep(g * time.Millisecond)
	}
	tail := interleaved(t, []string{"edge0", "edge1", "edge2"}, 5)
	evs = append(evs, tail...)
	publish(t, js, tail...)
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "r16bedge")
	stopWithin(t, r, 5*time.Second)
	noNotifierGoroutines(t)
	checkPerUser(t, "receiver", rc.accepted(), evs)
}

// review16bRun delivers evs to a receiver over js while disrupt runs once
// a quarter of them were taken, and checks every event was delivered once,
// in order per user.
func review16bRun(t *testing.T, js jetstream.JetStream, name string, disrupt func()) {
	t.Helper()
	rc := newReceiver(t)
	rc.delay = func(string) time.Duration { return time.Millisecond }
	start(t, js, notifier.Config{AckWait: 2 * time.Second, MaxAttempts: 1000}, notifier.Route{Sink: rc.sink(t, name)})
	evs := interleaved(t, review16bUsers(20), 15)
	publish(t, js, evs...)
	rc.waitAccepted(t, len(evs)/4, 3*waitLong)
	disrupt()
	deadline := time.Now().Add(6 * waitLong)
	for len(rc.accepted()) < len(evs) {
		if time.Now().After(deadline) {
			info := consumerInfo(t, js, name)
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			if st, err := js.Stream(sctx, bus.EventsStream); err == nil {
				t.Logf("stream %s: %+v, replicas %d", bus.EventsStream, st.CachedInfo().State, st.CachedInfo().Config.Replicas)
			}
			scancel()
			seen := map[string]bool{}
			for _, id := range rc.accepted() {
				seen[id] = true
			}
			for _, e := range evs {
				if !seen[e.ID()] {
					t.Logf("missing %s of %s", e.ID(), userOf(e))
				}
			}
			t.Fatalf("receiver accepted %d of %d events; consumer: delivered %+v, ack floor %+v, %d ack pending, %d pending, %d redelivered, %d waiting pulls, leader %v",
				len(rc.accepted()), len(evs), info.Delivered, info.AckFloor, info.NumAckPending, info.NumPending, info.NumRedelivered, info.NumWaiting, info.Cluster)
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	testutil.CheckFor(t, 6*waitLong, "settled", func() error {
		info := consumerInfo(t, js, name)
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("NumAckPending %d, NumPending %d", info.NumAckPending, info.NumPending)
		}
		return nil
	})
	// A redelivery after the ack wait would show up here as a second copy,
	// after the user's later events.
	waitFor := time.Now().Add(3 * time.Second)
	for time.Now().Before(waitFor) && len(rc.accepted()) == len(evs) {
		time.Sleep(50 * time.Millisecond)
	}
	checkPerUser(t, "receiver", rc.accepted(), evs)
}

// The NATS server restarts while batches of acks are in flight: a batch
// across the reconnect falls back to confirmed acks, so nothing delivered
// is delivered again and nothing is lost.
func TestReview16bNATSRestartWhileBatching(t *testing.T) {
	t.Parallel()
	s := natstest.StartSingle(t)
	_, js := natstest.ConnectURL(t, s.URL(), natstest.Reconnecting...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	review16bRun(t, js, "r16brestart", s.Restart)
}

// review16bStepDown asks the consumer's leader to step down and waits
// until another node leads it.
func review16bStepDown(t *testing.T, nc *nats.Conn, js jetstream.JetStream, name string) {
	t.Helper()
	before := consumerInfo(t, js, name).Cluster.Leader
	subj := fmt.Sprintf("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s", bus.EventsStream, name)
	testutil.CheckFor(t, 30*time.Second, "a new consumer leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, bus.EventsStream, name)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if l := info.Cluster.Leader; l != "" && l != before {
			return nil
		}
		_, _ = nc.Request(subj, nil, 2*time.Second)
		return fmt.Errorf("leader still %q", before)
	})
}

// The client's connection is re-established again and again while batches
// of acks are in flight (ForceReconnect, the server up): every batch across
// a reconnect falls back to each lane confirming its own ack, some of whose
// plain acks were lost with the old connection and some taken. Every event
// once, in order per user.
func TestReview16bReconnectsWhileBatching(t *testing.T) {
	t.Parallel()
	s := natstest.StartSingle(t)
	nc, js := natstest.ConnectURL(t, s.URL(), natstest.Reconnecting...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	review16bRun(t, js, "r16breconnect", func() {
		for range 5 {
			before := nc.Stats().Reconnects
			if err := nc.ForceReconnect(); err != nil {
				t.Fatal(err)
			}
			testutil.CheckFor(t, waitLong, "reconnected", func() error {
				if nc.Stats().Reconnects == before || !nc.IsConnected() {
					return fmt.Errorf("not reconnected yet")
				}
				return nil
			})
		}
	})
}
