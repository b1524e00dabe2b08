package notifier

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// lateSink is a batching sink (Flush) whose one Send reaches it only
// after the stop's first Flush, as an event still on its way to a Slack
// digest does: it then waits for the next Flush, as a new digest waits
// for its window.
type lateSink struct {
	mu      sync.Mutex
	flushes int
	flushed chan struct{} // closed at each Flush, then replaced
	entered chan struct{} // closed when Send has begun
	sent    bool
}

func newLateSink() *lateSink {
	return &lateSink{flushed: make(chan struct{}), entered: make(chan struct{})}
}

func (s *lateSink) Name() string { return "late" }

func (s *lateSink) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushes++
	close(s.flushed)
	s.flushed = make(chan struct{})
}

func (s *lateSink) Send(ctx context.Context, _ events.Event) error {
	close(s.entered)
	s.mu.Lock()
	first := s.flushed
	s.mu.Unlock()
	select { // it reaches the digest after the stop's first Flush
	case <-first:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	next := s.flushed
	s.mu.Unlock()
	select {
	case <-next:
		s.mu.Lock()
		s.sent = true
		s.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CI, 2026-12-04: a stop took the whole 30 s grace, and one of the events
// waiting for the Slack digest was cut off and left for the next run: it
// reached the sink after the stop's one Flush and joined a digest that
// waited for its window. The stop flushes again while deliveries are in
// flight, so such an event goes out within moments.
func TestStopFlushesWhatReachesTheSinkAfterItsFlush(t *testing.T) {
	js, c, _ := regress13Setup(t, time.Minute, "u")
	const grace = 10 * time.Second
	n := New(js, Config{AckWait: time.Minute, ShutdownGrace: grace, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	sink := newLateSink()
	p := n.newPump(context.Background(), sink, n.log)
	p.gate(c)
	msgs := regress13Fetch(t, c, 1)
	p.dispatch(msgs[0], consumerEpoch(c), c)
	<-sink.entered
	began := time.Now()
	p.close()
	if took := time.Since(began); took > grace/2 {
		t.Errorf("the stop took %s (grace %s): the event that reached the sink after its flush waited for the grace", took, grace)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if !sink.sent {
		t.Error("the event was cut off, not sent")
	}
}
