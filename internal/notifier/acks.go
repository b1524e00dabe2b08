package notifier

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackAck is the body of a positive acknowledgement (jetstream's AckAck).
var ackAck = []byte("+ACK")

// ackTimeout bounds one confirmation round trip.
const ackTimeout = 5 * time.Second

// batchAcks confirms the acks of a sink's delivered messages in batches. A
// confirmed ack (DoubleAck) for every message cost a busy notifier a
// request, a reply, a timer and an inbox lookup each time; a batch costs
// one. Its messages' acks are published in order on the one connection, and
// only the last asks for the server's reply: the server handles a
// consumer's acks in the order they arrive (one queue, and in a cluster one
// Raft log, whose replies go out as entries apply), so the reply to the last
// ack means every earlier one was taken too — unless the connection was
// re-established meanwhile, when earlier ones may have been lost with the
// old connection. Then, or when the reply does not come, the batch is not
// confirmed and each lane confirms its own ack (pump.ack), as before.
//
// Lanes wait for their batch, so a message stays held and kept alive until
// its ack is confirmed, exactly as with a DoubleAck of its own.
//
// Ownership: the pump starts it (newPump) and stops it (close) after every
// lane goroutine has exited, so no lane waits on a stopped batcher.
type batchAcks struct {
	nc *nats.Conn

	mu  sync.Mutex
	cur *ackBatch // filling; taken whole by the loop

	kick chan struct{} // capacity 1: a batch is waiting
	stop chan struct{}
	done chan struct{}
}

type ackBatch struct {
	msgs []jetstream.Msg
	done chan struct{} // closed once ok is known
	ok   bool
}

func newBatchAcks(nc *nats.Conn) *batchAcks {
	a := &batchAcks{nc: nc, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.loop()
	return a
}

// confirm acks m and reports whether the server confirmed it.
func (a *batchAcks) confirm(m jetstream.Msg) bool {
	a.mu.Lock()
	if a.cur == nil {
		a.cur = &ackBatch{done: make(chan struct{})}
	}
	b := a.cur
	b.msgs = append(b.msgs, m)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
	<-b.done
	return b.ok
}

func (a *batchAcks) loop() {
	defer close(a.done)
	for {
		select {
		case <-a.kick:
		case <-a.stop:
			// Lanes have exited: nothing is waiting. A batch still
			// filled would be a bug; settle it rather than hang.
			a.mu.Lock()
			b := a.cur
			a.cur = nil
			a.mu.Unlock()
			if b != nil {
				close(b.done)
			}
			return
		}
		a.mu.Lock()
		b := a.cur
		a.cur = nil
		a.mu.Unlock()
		if b == nil {
			continue
		}
		b.ok = a.send(b.msgs)
		close(b.done)
	}
}

// send publishes the acks of msgs and asks for a reply to the last one.
func (a *batchAcks) send(msgs []jetstream.Msg) bool {
	return a.sendSince(a.nc.Stats().Reconnects, msgs)
}

// sendSince is send for a batch begun when the connection had been
// re-established before times: confirmed only if it has not been since.
func (a *batchAcks) sendSince(before uint64, msgs []jetstream.Msg) bool {
	if len(msgs) == 0 {
		return false
	}
	for _, m := range msgs[:len(msgs)-1] {
		if a.nc.Publish(m.Reply(), ackAck) != nil {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if _, err := a.nc.RequestWithContext(ctx, msgs[len(msgs)-1].Reply(), ackAck); err != nil {
		return false
	}
	return a.nc.Stats().Reconnects == before
}

// close stops the loop and waits for it. Called once no lane runs.
func (a *batchAcks) close() {
	close(a.stop)
	<-a.done
}

// ackOne confirms m's ack by itself: a request to its reply subject, not
// m.DoubleAck, which refuses a message whose ack was already published by
// a batch that was not confirmed.
func ackOne(ctx context.Context, nc *nats.Conn, m jetstream.Msg) error {
	_, err := nc.RequestWithContext(ctx, m.Reply(), ackAck)
	return err
}
