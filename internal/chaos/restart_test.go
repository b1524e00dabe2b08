package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	"github.com/rollcall/rollcall/internal/natstest"
)

// TestNATSRestart stops the only NATS server under a running pipeline,
// changes the directory while it is down and starts it again on the same
// port and store: both services report not ready while it is down, recover
// by themselves, and deliver everything, once (issue 4 item 4).
func TestNATSRestart(t *testing.T) {
	start := time.Now()
	ns := natstest.StartSingle(t)
	d, api, rc, hook := startAPIs(t, 30)
	p := startPipeline(t, ns.URL(), 1, api, hook)
	o := observe(t, ns.URL())
	o.seeded(t)
	bothReady := func(want bool) func() error {
		return func() error {
			p.running(t)
			for name, addr := range map[string]string{"poller": p.pollerHTTP, "notifier": p.notifierHTTP} {
				if ok, body := ready(addr); ok != want {
					return fmt.Errorf("%s /readyz ready=%v: %s", name, ok, body)
				}
			}
			return nil
		}
	}
	testutil.CheckFor(t, 10*time.Second, "both services ready", bothReady(true))

	ctx, stopChanges := context.WithCancel(context.Background())
	changing := make(chan struct{})
	go func() { defer close(changing); d.run(ctx, 100*time.Millisecond, o) }()
	t.Cleanup(func() { stopChanges(); <-changing })
	testutil.CheckFor(t, 20*time.Second, "deliveries before the restart", func() error {
		if n := rc.count(); n < 15 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})

	ns.Stop()
	stopped := time.Now()
	testutil.CheckFor(t, 10*time.Second, "both services not ready while NATS is down", bothReady(false))
	// The directory keeps changing while the server is down.
	steps := d.stepsMade()
	testutil.CheckFor(t, 10*time.Second, "changes while NATS is down", func() error {
		if n := d.stepsMade(); n < steps+10 {
			return fmt.Errorf("%d steps", n-steps)
		}
		return nil
	})
	deliveredWhileDown := rc.count()

	ns.Restart()
	down := time.Since(stopped)
	testutil.CheckFor(t, 20*time.Second, "both services ready after the restart", bothReady(true))
	recovered := time.Since(stopped) - down
	testutil.CheckFor(t, 20*time.Second, "deliveries after the restart", func() error {
		if n := rc.count(); n < deliveredWhileDown+20 {
			return fmt.Errorf("%d delivered since the restart", n-deliveredWhileDown)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // changes go on after the restart
	stopChanges()
	<-changing

	f := settled(t, o, d, rc, 30*time.Second)
	p.running(t)
	t.Logf("NATS down %.1fs, services ready %.1fs after the restart: %d steps, %d role flips, %d events expected, %d on the stream, %d delivered; lost %d, duplicates on the stream %d, duplicate deliveries %d (%.1fs)",
		down.Seconds(), recovered.Seconds(), f.steps, f.flips, f.expected, f.onStream, f.delivered, f.lost, f.streamDups, f.deliveryDups, time.Since(start).Seconds())
}
