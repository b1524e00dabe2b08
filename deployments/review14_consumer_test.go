package deployments

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
)

// TestReview14ReplayRewritesNotifierConsumer: the replay user is meant to
// be read only ("No publish, no stream changes, no KV access"), but its
// $JS.API.CONSUMER.CREATE.ROLLCALL_EVENTS.> is also the subject of a
// consumer update. Logged in as replay, a reviewer rewrote the notifier's
// durable sink consumer to a filter that matches nothing: every event
// published meanwhile is skipped for that sink for good (the consumer's
// floor moves past it; the notifier restoring its filter at its next start
// does not bring them back). accounts.conf calls this a "known gap", but
// it lets the audit user silently stop every webhook and Slack delivery.
func TestReview14ReplayRewritesNotifierConsumer(t *testing.T) {
	pw := setPasswords(t)
	s, _ := startServer(t, "nats/nats-server.conf", nil)
	url := s.ClientURL()
	pol := connectAs(t, url, "poller", pw["poller"])
	not := connectAs(t, url, "notifier", pw["notifier"])
	rep := connectAs(t, url, "replay", pw["replay"])
	ctx := context.Background()
	if _, err := bus.Ensure(ctx, pol.js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	// The notifier's sink consumer, as internal/notifier creates it.
	cfg := jetstream.ConsumerConfig{
		Durable: "webhook", Description: "rollcall notifier sink webhook",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		FilterSubjects: []string{"rollcall.events.>"}, MaxAckPending: 1024, MaxDeliver: -1,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	if _, err := not.js.CreateConsumer(ctx, bus.EventsStream, cfg); err != nil {
		t.Fatal(err)
	}
	evil := cfg
	evil.FilterSubjects = []string{"rollcall.events.nothing.>"}
	evil.MaxAckPending = 1
	uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := rep.js.UpdateConsumer(uctx, bus.EventsStream, evil)
	cancel()
	if err != nil {
		t.Logf("refused (good): %v", err)
		return
	}
	c, err := not.js.Consumer(ctx, bus.EventsStream, "webhook")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Errorf("the read-only replay user rewrote the notifier's consumer: filters %v, max_ack_pending %d",
		info.Config.FilterSubjects, info.Config.MaxAckPending)
}
