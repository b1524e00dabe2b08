package notifier

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// slowInfo is a real consumer whose Info runs hook once, after the server
// has answered and before the answer reaches the caller: the deliveries
// that happen while a consumer-info request is on its way.
type slowInfo struct {
	jetstream.Consumer
	once sync.Once
	hook func()
}

func (s *slowInfo) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	info, err := s.Consumer.Info(ctx)
	s.once.Do(s.hook)
	return info, err
}

// CI, 2026-12-04 (TestRegress13SecondLossDuringGate, under load): the
// gate watcher compared the consumer's pending count with the messages
// held when the answer came back. A second loss on its way meanwhile (w1
// lost, w2 dispatched) made the stale count equal the new one, so the gate
// lifted while u1 and w1 were still out, and u2 and w2 overtook them.
func TestGateWatcherComparesWithWhatWasHeldWhenAsked(t *testing.T) {
	js, c, _ := regress13Setup(t, time.Minute, "u", "u", "w", "w")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &orderSink{}
	n := New(js, Config{AckWait: time.Minute, Schedule: []time.Duration{10 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	p := n.newPump(ctx, sink, n.log)
	defer p.close()
	p.gate(c)
	first := regress13Fetch(t, c, 2) // u1, lost on its way; u2
	cw := &slowInfo{Consumer: c}
	cw.hook = func() {
		second := regress13Fetch(t, c, 2) // w1, lost too; w2
		p.dispatch(second[1], consumerEpoch(c), cw)
	}
	p.dispatch(first[1], consumerEpoch(c), cw) // gates the pump
	time.Sleep(time.Second)                    // the watcher's polls
	if got := sink.sent(); len(got) != 0 {
		t.Fatalf("the gate lifted while u1 and w1 were still out: %d later events delivered first", len(got))
	}
}
