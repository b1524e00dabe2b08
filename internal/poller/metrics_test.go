package poller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	rtestutil "github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestRunMetrics drives one source through a silent seed, a run with
// changes, a mass removal held by the guard and a failing API, and checks
// that every per-source metric follows: runs by outcome, run duration,
// users tracked, last success, events published by type, removals held and
// health.
func TestRunMetrics(t *testing.T) {
	g := newGuardEnv(t)
	m := metrics.NewPoller(prometheus.NewRegistry())
	c, err := veeam.New(veeam.Config{Name: "big", BaseURL: g.url, Token: "api-key", Backoff: fast, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := poller.New(g.e.js, g.e.h, poller.Config{Metrics: m, Guard: poller.Guard{MinRemovals: 10, MaxRatio: 0.2, Hold: time.Hour}},
		poller.SourceConfig{Source: c, Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	val := func(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
	wait := func(what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for err := cond(); err != nil; err = cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	want := func(what string, c prometheus.Collector, v float64) func() error {
		return func() error {
			if got := val(c); got != v {
				return fmt.Errorf("%s = %v, want %v", what, got, v)
			}
			return nil
		}
	}

	// The seed: a success, 30 users, no events.
	start := time.Now()
	wait("a successful run", func() error {
		if val(m.Runs.WithLabelValues("big", "success")) < 1 {
			return fmt.Errorf("no success yet")
		}
		return nil
	})
	if got := val(m.UsersTracked.WithLabelValues("big")); got != 30 {
		t.Errorf("users tracked = %v, want 30", got)
	}
	if got := val(m.LastSuccess.WithLabelValues("big")); got < float64(start.Unix()-1) || got > float64(time.Now().Unix()+1) {
		t.Errorf("last success timestamp = %v, want about %d", got, start.Unix())
	}
	if got := val(m.SourceHealthy.WithLabelValues("big", "veeam")); got != 1 {
		t.Errorf("healthy = %v after a successful run", got)
	}
	if n := testutil.CollectAndCount(m.EventsPublished); n != 0 {
		t.Errorf("the silent seed published %d event series", n)
	}
	if n := rtestutil.HistogramCount(t, m.RunDuration, "source", "big"); n < 1 {
		t.Errorf("run duration observations = %d", n)
	}

	// Changes: one promoted, one new, counted per type.
	u := veeamUser(1)
	u.Role = "CompanyOwner"
	g.fake.Put(u)
	g.fake.Put(veeamUser(100))
	wait("changes published", func() error {
		if err := want("registered", m.EventsPublished.WithLabelValues("big", events.TypeRegistered), 1)(); err != nil {
			return err
		}
		return want("roleChanged", m.EventsPublished.WithLabelValues("big", events.TypeRoleChanged), 1)()
	})
	wait("users tracked", want("users", m.UsersTracked.WithLabelValues("big"), 31))

	// A mass removal is held, not published.
	for i := 10; i < 25; i++ {
		g.fake.Remove(veeamUser(i).InstanceUID)
	}
	wait("removals held", want("removals held", m.RemovalsHeld.WithLabelValues("big"), 15))
	if got := val(m.EventsPublished.WithLabelValues("big", events.TypeRetired)); got != 0 {
		t.Errorf("held removals published %v retirements", got)
	}

	// A failing API: failures counted, the source unhealthy, last success
	// no longer moving.
	g.fake.InjectFault(veeamtest.Fault{Status: 500, Times: 1 << 20})
	wait("a failed run", func() error {
		if val(m.Runs.WithLabelValues("big", "failure")) < 1 {
			return fmt.Errorf("no failure yet")
		}
		return want("healthy", m.SourceHealthy.WithLabelValues("big", "veeam"), 0)()
	})
	last := val(m.LastSuccess.WithLabelValues("big"))
	failures := val(m.Runs.WithLabelValues("big", "failure"))
	wait("more failures", func() error {
		if val(m.Runs.WithLabelValues("big", "failure")) <= failures {
			return fmt.Errorf("no further failure")
		}
		return nil
	})
	if got := val(m.LastSuccess.WithLabelValues("big")); got != last {
		t.Errorf("last success moved during failures: %v → %v", last, got)
	}
}
