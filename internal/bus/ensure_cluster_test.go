package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
)

// TestEnsureConcurrentOnFreshCluster starts two pollers' worth of Ensure at
// once on a new three-node cluster, as two replicas started together do:
// on such a cluster the server may answer neither of two racing creates of
// one stream (nats-server #3677), and each caller must retry rather than
// wait out its whole start-up budget.
func TestEnsureConcurrentOnFreshCluster(t *testing.T) {
	for round := range 2 {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			c := natstest.StartCluster(t, 3)
			c.WaitReady()
			const callers = 2
			var wg sync.WaitGroup
			errs := make([]error, callers)
			took := make([]time.Duration, callers)
			for i := range callers {
				nc, err := nats.Connect(c.URL(i))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					start := time.Now()
					_, errs[i] = bus.Ensure(ctx, js, bus.Config{Replicas: 3})
					took[i] = time.Since(start)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("caller %d: Ensure after %s: %v", i, took[i].Round(time.Millisecond), err)
				}
			}
			t.Logf("took %v", took)
		})
	}
}
