package notifier_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestMetrics drives one sink through every outcome and checks each metric:
// one event delivered after a retry, one dead-lettered, one delivered first
// time; while the sink is held, the consumer's pending counts show the
// backlog, and they drain to zero after.
func TestMetrics(t *testing.T) {
	t.Parallel()
	js := setup(t)
	flaky := mkEvent(t, "vpp", "1", events.TypeRegistered, 1)
	bad := mkEvent(t, "vpp", "2", events.TypeRegistered, 1)
	fine := mkEvent(t, "vpp", "3", events.TypeRegistered, 1)
	release := make(chan struct{})
	sink := &recSink{name: "hooks", script: func(n int, e events.Event) error {
		switch {
		case e.ID() == bad.ID():
			return &httpx.StatusError{Code: 400}
		case e.ID() == flaky.ID() && n == 1:
			<-release
			return &httpx.StatusError{Code: 503}
		}
		return nil
	}}
	m := metrics.NewNotifier(prometheus.NewRegistry())
	start(t, js, notifier.Config{Metrics: m, PendingEvery: 20 * time.Millisecond, Concurrency: 1, Window: 1}, notifier.Route{Sink: sink})
	// With one delivery in flight (held by release), the other two wait on
	// the stream: pending 2, ack pending 1.
	publish(t, js, flaky)
	testutil.CheckFor(t, waitLong, "first send", func() error {
		if len(sink.all()) == 0 {
			return fmt.Errorf("no send yet")
		}
		return nil
	})
	publish(t, js, bad, fine)
	testutil.CheckFor(t, waitLong, "pending gauges", func() error {
		p, a := promtest.ToFloat64(m.Pending.WithLabelValues("hooks")), promtest.ToFloat64(m.AckPending.WithLabelValues("hooks"))
		if p != 2 || a != 1 {
			return fmt.Errorf("pending %v, ack pending %v; want 2 and 1", p, a)
		}
		return nil
	})
	close(release)
	waitDelivered(t, sink, 2)
	waitSettled(t, js, "hooks")
	testutil.CheckFor(t, waitLong, "counters", func() error {
		for outcome, want := range map[string]float64{metrics.Delivered: 2, metrics.Retried: 1, metrics.DeadLettered: 1} {
			if got := promtest.ToFloat64(m.Deliveries.WithLabelValues("hooks", outcome)); got != want {
				return fmt.Errorf("deliveries %s = %v, want %v", outcome, got, want)
			}
		}
		if got := promtest.ToFloat64(m.DeadLetters.WithLabelValues("hooks")); got != 1 {
			return fmt.Errorf("dead letters = %v, want 1", got)
		}
		if p := promtest.ToFloat64(m.Pending.WithLabelValues("hooks")) + promtest.ToFloat64(m.AckPending.WithLabelValues("hooks")); p != 0 {
			return fmt.Errorf("pending after draining = %v", p)
		}
		return nil
	})
	// Latency is observed per delivered event, send duration per attempt.
	if n := testutil.HistogramCount(t, m.DeliveryLatency, "sink", "hooks"); n != 2 {
		t.Errorf("delivery latency observations = %d, want 2", n)
	}
	if n := testutil.HistogramCount(t, m.SendDuration, "sink", "hooks"); n != 4 {
		t.Errorf("send duration observations = %d, want 4 (one per attempt)", n)
	}
}
