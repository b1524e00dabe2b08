package notifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/pkg/events"
)

// pump is one sink's delivery machinery. Messages from the consumer are
// queued in per-user lanes; a lane has a goroutine while it holds messages
// and delivers them one at a time, so a user's events reach the sink in
// stream order while different users' events go out side by side. The
// consumer's MaxAckPending (Config.Concurrency) bounds what the pump holds,
// and slots bounds the sends in flight. A keep-alive goroutine sends
// InProgress for every held message so that none is redelivered while it
// waits behind its user's earlier event or between retries.
//
// A previous run may have left messages pending: released with a Nak at
// its shutdown, or unacknowledged when it crashed (redelivered after the
// ack wait). JetStream does not redeliver those in stream order (a Nak'ed
// message taken from the redelivery queue while no pull request waits goes
// back to its end), and a crashed run's messages come back only after
// messages the server had not delivered yet. So while the consumer has more
// messages pending than the pump holds, the pump is gated: it collects what
// arrives and, once it holds every pending message (or AckWait and a margin
// have passed), hands them to the lanes in stream order.
//
// Ownership: the consume loop owns the pump; close stops it and returns
// once every lane goroutine, the gate watcher and the keep-alive goroutine
// have exited.
type pump struct {
	n    *Notifier
	sink Sink
	log  *slog.Logger

	// stopping ends when the notifier stops: no new attempt starts, and
	// every message not in flight is released (Nak) in order.
	stopping context.Context
	stop     context.CancelFunc
	// drained is closed once the consumer's subscription is gone. Releases
	// wait for it: a message released while the subscription still has a
	// pull request open would be redelivered straight back to this run.
	drained chan struct{}
	// cut ends ShutdownGrace after the stop: sends still in flight are
	// cancelled and their messages released.
	cut    context.Context
	cutNow context.CancelFunc

	slots chan struct{} // one token per send in flight

	mu      sync.Mutex
	lanes   map[string]*lane
	held    int            // messages in lanes and behind the gate
	gated   bool           // collecting into waiting instead of the lanes
	waiting []held         // collected while gated
	wg      sync.WaitGroup // lane goroutines and the gate watcher

	kaStop chan struct{} // closed to end the keep-alive
	kaDone chan struct{} // closed when it has ended
}

// lane is one user's held messages in stream order; msgs[0] is the one
// being delivered. Only dispatch and the gate add (enqueue), only the
// lane's goroutine removes, all under pump.mu.
type lane struct {
	key  string
	msgs []held
}

type held struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	// epoch is the creation time of the consumer incarnation that
	// delivered msg (consumerEpoch), part of its dead-letter id.
	epoch int64
}

func (n *Notifier) newPump(ctx context.Context, sink Sink, log *slog.Logger) *pump {
	p := &pump{
		n:       n,
		sink:    sink,
		log:     log,
		slots:   make(chan struct{}, n.concurrency(sink)),
		lanes:   map[string]*lane{},
		drained: make(chan struct{}),
		kaStop:  make(chan struct{}),
		kaDone:  make(chan struct{}),
	}
	p.stopping, p.stop = context.WithCancel(ctx)
	p.cut, p.cutNow = context.WithCancel(context.WithoutCancel(ctx))
	every := max(n.cfg.AckWait/3, 10*time.Millisecond)
	go p.keepAlive(every)
	return p
}

// close stops the pump, once nothing more will be dispatched and the
// subscription is gone: lanes release what they hold once their message in
// flight, if any, is settled; after ShutdownGrace the sends still in flight
// are cut off. It returns when every goroutine of the pump has exited and
// the releases have reached the server.
func (p *pump) close() {
	close(p.drained)
	p.stop()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(p.n.cfg.ShutdownGrace)
	select {
	case <-done:
	case <-grace.C:
		p.log.Warn("deliveries still in flight after the shutdown grace; cutting them off and releasing their events", "grace", p.n.cfg.ShutdownGrace.String())
		p.cutNow()
		<-done
	}
	grace.Stop()
	p.cutNow()
	close(p.kaStop)
	<-p.kaDone
	// Acks are confirmed (DoubleAck) but Naks are not: flush so that the
	// next run finds the released events at once, not after the ack wait.
	if nc := p.n.js.Conn(); nc != nil && !nc.IsClosed() {
		_ = nc.FlushTimeout(time.Second)
	}
}

// dispatch queues msg in its user's lane, starting the lane's goroutine if
// the lane was empty, or behind the gate. It never blocks on a delivery.
// epoch identifies the consumer that delivered it (consumerEpoch).
func (p *pump) dispatch(msg jetstream.Msg, epoch int64) {
	meta, err := msg.Metadata()
	if err != nil {
		p.log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	h := held{msg: msg, meta: meta, epoch: epoch}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holds(meta.Sequence.Stream) {
		// The server sent a message again that is still held here (a
		// keep-alive got lost): the copy held settles it.
		p.log.Debug("redelivery of an event already held; ignored", "stream_seq", meta.Sequence.Stream)
		return
	}
	p.held++
	if p.gated {
		p.waiting = append(p.waiting, h)
		return
	}
	p.enqueue(h)
}

// holds reports whether the message with stream sequence seq is held.
// Called with p.mu held.
func (p *pump) holds(seq uint64) bool {
	for _, h := range p.waiting {
		if h.meta.Sequence.Stream == seq {
			return true
		}
	}
	for _, l := range p.lanes {
		for _, h := range l.msgs {
			if h.meta.Sequence.Stream == seq {
				return true
			}
		}
	}
	return false
}

// enqueue puts h in its user's lane, in stream order among the messages
// waiting there (msgs[0] is already being delivered). Called with p.mu held.
func (p *pump) enqueue(h held) {
	key := laneKey(h.msg.Subject())
	l := p.lanes[key]
	if l == nil {
		l = &lane{key: key, msgs: []held{h}}
		p.lanes[key] = l
		p.wg.Add(1)
		go p.run(l)
		return
	}
	i := len(l.msgs)
	for i > 1 && l.msgs[i-1].meta.Sequence.Stream > h.meta.Sequence.Stream {
		i--
	}
	l.msgs = slices.Insert(l.msgs, i, h)
}

// gate checks, before consuming starts, whether the consumer has messages
// pending that the pump does not hold (left by an earlier run); if so it
// gates the pump until they have arrived. c is the consumer being read.
func (p *pump) gate(c jetstream.Consumer) {
	p.mu.Lock()
	if p.gated {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	pending, err := p.pending(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && pending <= p.held {
		return
	}
	p.gated = true
	p.log.Info("messages left pending by an earlier run; collecting them to deliver each user's in order", "pending", pending, "held", p.held, "err", err)
	p.wg.Add(1)
	go p.watchGate(c, time.Now().Add(p.n.cfg.AckWait+5*time.Second))
}

func (p *pump) pending(c jetstream.Consumer) (int, error) {
	ctx, cancel := context.WithTimeout(p.stopping, 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumAckPending, nil
}

// watchGate lifts the gate once the pump holds every pending message, when
// the deadline passes (a message delivered to a dead subscriber comes back
// only after the ack wait; another notifier sharing the consumer would hold
// some for good), or when the pump stops.
func (p *pump) watchGate(c jetstream.Consumer, deadline time.Time) {
	defer p.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	reason := "stopping"
loop:
	for {
		select {
		case <-p.stopping.Done():
			break loop
		case <-t.C:
		}
		pending, err := p.pending(c)
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if err == nil && pending <= held {
			reason = "every pending message arrived"
			break
		}
		if time.Now().After(deadline) {
			reason = "deadline"
			p.log.Warn("messages still pending elsewhere after the ack wait; delivering what arrived (is another notifier using this sink's consumer?)", "pending", pending, "held", held, "err", err)
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.SortFunc(p.waiting, func(a, b held) int {
		return cmp.Compare(a.meta.Sequence.Stream, b.meta.Sequence.Stream)
	})
	for _, h := range p.waiting {
		p.enqueue(h)
	}
	p.log.Info("gate lifted", "reason", reason, "collected", len(p.waiting))
	p.waiting, p.gated = nil, false
}

// run settles the lane's messages in order and exits when it is empty.
func (p *pump) run(l *lane) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(l.msgs) == 0 {
			delete(p.lanes, l.key)
			p.mu.Unlock()
			return
		}
		h := l.msgs[0]
		p.mu.Unlock()

		p.deliver(h)

		p.mu.Lock()
		l.msgs[0] = held{}
		l.msgs = l.msgs[1:]
		p.held--
		p.mu.Unlock()
	}
}

// keepAlive tells the server, every so often, that every held message is
// still being worked on, until close ends it.
func (p *pump) keepAlive(every time.Duration) {
	defer close(p.kaDone)
	t := time.NewTicker(every)
	defer t.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-p.kaStop:
			return
		case <-t.C:
		}
		msgs = msgs[:0]
		p.mu.Lock()
		for _, h := range p.waiting {
			msgs = append(msgs, h.msg)
		}
		for _, l := range p.lanes {
			for _, h := range l.msgs {
				msgs = append(msgs, h.msg)
			}
		}
		p.mu.Unlock()
		for _, m := range msgs {
			// A message settled meanwhile answers ErrMsgAlreadyAckd, and
			// the server ignores progress for one it no longer holds.
			_ = m.InProgress()
		}
		clear(msgs)
	}
}

var errStopping = errors.New("notifier stopping")

// deliver settles one message: it sends it until the sink takes it (then
// acknowledges it), until the failure is permanent or MaxAttempts is
// reached (then dead-letters it), or until the notifier stops (then
// releases it). Attempts count this run's sends plus the deliveries the
// server made before this one (earlier runs).
func (p *pump) deliver(h held) {
	msg := h.msg
	prior := int(h.meta.NumDelivered) - 1
	log := p.log.With("stream_seq", h.meta.Sequence.Stream)
	if p.stopping.Err() != nil {
		p.release(msg, log)
		return
	}
	e, err := events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
	if err != nil {
		p.deadLetter(h, nil, fmt.Sprintf("undecodable message: %v", err), 0, prior+1, log)
		return
	}
	log = log.With("event", e.ID(), "type", e.Type(), "subject", e.Subject())
	for attempt := prior + 1; ; attempt++ {
		err := p.send(e)
		if errors.Is(err, errStopping) {
			p.release(msg, log)
			return
		}
		if err == nil {
			p.ack(msg, log)
			p.count(metrics.Delivered)
			if m := p.n.cfg.Metrics; m != nil {
				m.DeliveryLatency.WithLabelValues(p.sink.Name()).Observe(time.Since(h.meta.Timestamp).Seconds())
			}
			log.Debug("delivered", "attempt", attempt)
			return
		}
		if p.cut.Err() != nil {
			// Cut off at shutdown: not known to be delivered.
			log.Warn("delivery cut off at shutdown; event released for the next run", "err", err, "attempt", attempt)
			p.release(msg, log)
			return
		}
		retry, after := httpx.Retryable(err)
		status := 0
		var se *httpx.StatusError
		if errors.As(err, &se) {
			status = se.Code
		}
		switch {
		case !retry:
			p.deadLetter(h, &e, "permanent failure: "+err.Error(), status, attempt, log)
			return
		case p.n.cfg.MaxAge > 0 && eventAge(e, h.meta) > p.n.cfg.MaxAge:
			// Checked only once an attempt failed: an old event that the
			// sink takes is delivered (see Config.MaxAge).
			age := eventAge(e, h.meta).Round(time.Second)
			p.deadLetter(h, &e, fmt.Sprintf("too old: %s old, over the maximum age %s; attempt %d failed: %v", age, p.n.cfg.MaxAge, attempt, err), status, attempt, log)
			return
		case attempt >= p.n.cfg.MaxAttempts:
			p.deadLetter(h, &e, fmt.Sprintf("gave up after %d attempts: %v", attempt, err), status, attempt, log)
			return
		}
		p.count(metrics.Retried)
		delay := p.n.cfg.Backoff.Delay(attempt, after)
		log.Warn("delivery failed; will retry", "err", err, "attempt", attempt, "retry_in", delay.String())
		if httpx.Sleep(p.stopping, delay) != nil {
			p.release(msg, log)
			return
		}
	}
}

// eventAge is how long ago e happened: its time, or the time the stream
// stored it when the event has none.
func eventAge(e events.Event, meta *jetstream.MsgMetadata) time.Duration {
	t := e.Time()
	if t.IsZero() && meta != nil {
		t = meta.Timestamp
	}
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}

// ack confirms a delivered message. An ack lost to a NATS failover or
// restart is sent again (the message stays held and kept alive meanwhile,
// and the server keeps its pending state), so that a delivered event is not
// delivered a second time after the ack wait; only a stop that outlasts the
// shutdown grace gives up, leaving at-least-once redelivery.
func (p *pump) ack(msg jetstream.Msg, log *slog.Logger) {
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := msg.DoubleAck(actx)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return
		}
		if p.cut.Err() != nil || p.n.closed(err) {
			log.Warn("delivered but the ack failed at shutdown or with the connection closed; the event may be delivered again", "err", err)
			return
		}
		delay := p.n.cfg.Backoff.Delay(try, 0)
		log.Warn("delivered but the ack failed; sending the ack again", "err", err, "retry_in", delay.String())
		if httpx.Sleep(p.cut, delay) != nil {
			log.Warn("delivered but the ack failed at shutdown; the event may be delivered again", "err", err)
			return
		}
	}
}

// send makes one delivery attempt in a free slot. A send already under way
// when the notifier stops goes on until cut; none starts after the stop.
func (p *pump) send(e events.Event) error {
	select {
	case p.slots <- struct{}{}:
	case <-p.stopping.Done():
		return errStopping
	}
	defer func() { <-p.slots }()
	if p.stopping.Err() != nil {
		return errStopping
	}
	ctx, cancel := context.WithTimeout(p.cut, p.n.sendTimeout(p.sink))
	defer cancel()
	start := time.Now()
	err := p.sink.Send(ctx, e)
	if m := p.n.cfg.Metrics; m != nil {
		m.SendDuration.WithLabelValues(p.sink.Name()).Observe(time.Since(start).Seconds())
	}
	return err
}

// count records a delivery outcome.
func (p *pump) count(outcome string) {
	if m := p.n.cfg.Metrics; m != nil {
		m.Deliveries.WithLabelValues(p.sink.Name(), outcome).Inc()
	}
}

// deadLetter stores the event on the dead-letter stream and terminates the
// message. If the store fails the message stays at the head of its lane
// (later events of the user keep waiting) and the store is tried again; a
// stop releases it instead.
func (p *pump) deadLetter(h held, e *events.Event, reason string, status, attempts int, log *slog.Logger) {
	msg := h.msg
	for try := 1; ; try++ {
		err := p.n.publishDeadLetter(p.sink.Name(), h, e, reason, status, attempts)
		if err == nil {
			log.Error("event dead-lettered", "reason", reason, "status", status, "attempts", attempts)
			p.count(metrics.DeadLettered)
			if m := p.n.cfg.Metrics; m != nil {
				m.DeadLetters.WithLabelValues(p.sink.Name()).Inc()
			}
			_ = msg.Term()
			return
		}
		delay := p.n.cfg.Backoff.Delay(try, 0)
		log.Error("dead-letter publish failed; will retry, the event is kept", "err", err, "retry_in", delay.String())
		if httpx.Sleep(p.stopping, delay) != nil {
			p.release(msg, log)
			return
		}
	}
}

// release gives the message back to the server for the next run, once
// the subscription is gone.
func (p *pump) release(msg jetstream.Msg, log *slog.Logger) {
	<-p.drained
	if err := msg.Nak(); err != nil {
		log.Warn("releasing the event failed; it is redelivered after the ack wait", "err", err)
		return
	}
	log.Debug("event released")
}
