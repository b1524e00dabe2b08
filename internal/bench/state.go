package bench

import (
	"context"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/poller"
)

// connect opens a connection of its own to the benchmark's server, as a
// poller process starting up would.
func (e *sizeEnv) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(e.nats.url, nats.Name("rollcall-bench-startup"))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(3*time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// startPoller does what a poller process does between its start and its
// first run of source name: connect, ensure the stream and buckets, load
// what it keeps of the source's users (poller.LoadState).
func (e *sizeEnv) startPoller(ctx context.Context, name string) error {
	nc, js, err := e.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		return err
	}
	var scs []poller.SourceConfig
	for _, s := range e.srcs {
		if s.name == name {
			scs = append(scs, poller.SourceConfig{Source: s.client, Interval: time.Hour})
		}
	}
	p := poller.New(js, h, poller.Config{}, scs...)
	err = p.LoadState(ctx)
	runtime.KeepAlive(p)
	return err
}

// heldState is the heap the benchmark's poller holds, after its runs, for
// what it knows of every user of every source (the heap in use with the
// poller minus without it), and how many users that is. The poller is
// replaced by a new one, which loads its state on its first run.
func (e *sizeEnv) heldState(ctx context.Context) (uint64, int, error) {
	// The poller's state is current after its last run; make sure it is
	// loaded even if no run happened in this process.
	if err := e.p.LoadState(ctx); err != nil {
		return 0, 0, err
	}
	users := e.p.KnownUsers()
	with := settledHeap()
	e.p = nil
	without := settledHeap()
	e.p = e.newPoller(poller.LeaseConfig{})
	if with < without {
		return 0, users, nil
	}
	return with - without, users, nil
}
