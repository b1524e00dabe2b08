package notifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/pkg/events"
)

// pump is one sink's delivery machinery. Messages from the consumer are
// queued in per-user lanes; a lane has a goroutine while it holds messages
// and delivers them one at a time, so a user's events reach the sink in
// stream order while different users' events go out side by side. slots
// bounds the sends in flight (Config.Concurrency); the consumer's
// MaxAckPending (Config.Window) bounds what the pump holds, and is far
// larger, so that users waiting to retry (each holding its events) never
// hold back the others. A keep-alive goroutine sends InProgress for every
// held message so that none is redelivered while it waits behind its
// user's earlier event or between retries.
//
// A previous run may have left messages pending: released with a Nak at
// its shutdown, or unacknowledged when it crashed (redelivered after the
// ack wait). JetStream does not redeliver those in stream order, and a
// crashed run's messages come back only after messages the server had not
// delivered yet. The same happens within a run when a delivery is lost on
// its way (a NATS failover): it comes back after the ack wait, and the
// consumer's delivery sequence skips it. So when consuming starts, after a
// failed pull, and whenever the delivery sequence skips, the pump checks
// whether the consumer has messages pending that it does not hold; if so it
// is gated: it collects what arrives and, once it holds every pending
// message (or AckWait and a margin have passed), hands them to the lanes
// in stream order.
//
// While attempts for two users or more fail with no success between them,
// the sink is down: every ProbeEvery one waiting event is tried out of its
// schedule, and the first delivery wakes every waiting event, so a sink
// back from an outage gets its backlog at once rather than hours later.
//
// Ownership: the consume loop owns the pump; close stops it and returns
// once every lane goroutine, the gate watcher, the prober and the
// keep-alive goroutine have exited.
type pump struct {
	n    *Notifier
	sink Sink
	log  *slog.Logger
	// binary is the sink when it sends a message's CloudEvents headers and
	// body on as they are (events.AsBinary), nil otherwise.
	binary binarySink
	// obs are the sink's metrics, bound to its name on first use: a lookup
	// by label values for every message cost more than the observation.
	obs pumpMetrics

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
	// idle hands a new lane to a lane goroutine waiting for one (work).
	idle chan *lane
	// acks confirms delivered messages' acks in batches (see batchAcks),
	// while batching holds: the consumer read has one replica (batchable).
	acks     *batchAcks
	batching atomic.Bool

	mu    sync.Mutex
	lanes map[string]*lane
	held  int // messages in lanes and behind the gate
	// left counts the messages that left the pump (delivered, dead-lettered
	// or released). A consumer's pending count is read from the server
	// while lanes go on: held read before that request, less what left
	// meanwhile, is what the pump surely held when the server counted;
	// held read after it may count messages the server had not yet sent.
	left     uint64
	seqs     map[uint64]struct{} // their stream sequences (holds)
	gated    bool                // collecting into waiting instead of the lanes
	waiting  []held              // collected while gated
	deadline time.Time           // when the gate lifts even if messages are still missing
	lastSeq  uint64              // the consumer delivery sequence last received (or delivered before this run)
	seqKnown bool                // lastSeq is known: read from the consumer, or a delivery received
	wg       sync.WaitGroup      // lane goroutines, the gate watcher and the prober

	health health

	kaStop chan struct{} // closed to end the keep-alive
	kaDone chan struct{} // closed when it has ended
}

// binarySink is a sink that can send a message as it is, without the event
// being decoded and encoded again (the webhook in binary mode).
type binarySink interface {
	SendsBinary() bool
	SendBinary(ctx context.Context, b events.Binary) error
}

// pumpMetrics are a sink's metrics, each bound to the sink on first use
// (nil without Config.Metrics).
type pumpMetrics struct {
	delivered, retried, deadLettered func() prometheus.Counter
	deadLetters                      func() prometheus.Counter
	latency, send                    func() prometheus.Observer
}

func newPumpMetrics(m *metrics.Notifier, sink string) pumpMetrics {
	if m == nil {
		return pumpMetrics{}
	}
	counter := func(v *prometheus.CounterVec, labels ...string) func() prometheus.Counter {
		return sync.OnceValue(func() prometheus.Counter { return v.WithLabelValues(labels...) })
	}
	observer := func(v *prometheus.HistogramVec) func() prometheus.Observer {
		return sync.OnceValue(func() prometheus.Observer { return v.WithLabelValues(sink) })
	}
	return pumpMetrics{
		delivered:    counter(m.Deliveries, sink, metrics.Delivered),
		retried:      counter(m.Deliveries, sink, metrics.Retried),
		deadLettered: counter(m.Deliveries, sink, metrics.DeadLettered),
		deadLetters:  counter(m.DeadLetters, sink),
		latency:      observer(m.DeliveryLatency),
		send:         observer(m.SendDuration),
	}
}

// msgLog is one message's logger, made on first use: slog's With formats
// its attributes when called, which cost every delivery CPU though one
// that goes well logs nothing. Used by the message's lane goroutine only.
type msgLog struct {
	base *slog.Logger
	seq  uint64
	// event gives the decoded event once it is known to decode; its id,
	// type and subject then go in every line.
	event func() events.Event
	l     *slog.Logger
	named bool // l has the event's attributes
}

func (m *msgLog) get() *slog.Logger {
	if m.l == nil {
		m.l = m.base.With("stream_seq", m.seq)
	}
	if !m.named && m.event != nil {
		e := m.event()
		m.l, m.named = m.l.With("event", e.ID(), "type", e.Type(), "subject", e.Subject()), true
	}
	return m.l
}

// health is whether the sink as a whole is failing (see pump).
type health struct {
	mu          sync.Mutex
	failing     map[string]bool // lanes whose attempts failed since the last delivery
	lastSuccess time.Time
	down        bool
	recovered   chan struct{} // closed when a delivery succeeds after the sink was down
	probe       chan struct{} // a waiting lane takes a token: a probe attempt
	stopProbe   chan struct{}
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
		idle:    make(chan *lane),
		lanes:   map[string]*lane{},
		seqs:    map[uint64]struct{}{},
		drained: make(chan struct{}),
		kaStop:  make(chan struct{}),
		kaDone:  make(chan struct{}),
		health:  health{failing: map[string]bool{}, recovered: make(chan struct{}), probe: make(chan struct{})},
	}
	p.stopping, p.stop = context.WithCancel(ctx)
	p.cut, p.cutNow = context.WithCancel(context.WithoutCancel(ctx))
	if b, ok := sink.(binarySink); ok && b.SendsBinary() {
		p.binary = b
	}
	p.obs = newPumpMetrics(n.cfg.Metrics, sink.Name())
	p.acks = newBatchAcks(n.js.Conn())
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
	// A batching sink sends what it holds now, within the grace; and again
	// while deliveries are in flight, for an event that reached it after a
	// flush (it would wait for its batch's window, beyond the grace).
	flush := func() {}
	if f, ok := p.sink.(interface{ Flush() }); ok {
		flush = f.Flush
	}
	flush()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(p.n.cfg.ShutdownGrace)
	again := time.NewTicker(flushAgainEvery)
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-again.C:
			flush()
		case <-grace.C:
			p.log.Warn("deliveries still in flight after the shutdown grace; cutting them off and releasing their events", "grace", p.n.cfg.ShutdownGrace.String())
			p.cutNow()
			<-done
			waiting = false
		}
	}
	again.Stop()
	grace.Stop()
	p.cutNow()
	p.acks.close() // no lane is left to wait for an ack
	close(p.kaStop)
	<-p.kaDone
	// Acks are confirmed (DoubleAck) but Naks are not: flush so that the
	// next run finds the released events at once, not after the ack wait.
	if nc := p.n.js.Conn(); nc != nil && !nc.IsClosed() {
		_ = nc.FlushTimeout(time.Second)
	}
}

// flushAgainEvery is how often a stopping pump flushes a batching sink
// again while deliveries are still in flight.
const flushAgainEvery = 200 * time.Millisecond

// dispatch queues msg in its user's lane, starting the lane's goroutine if
// the lane was empty, or behind the gate. It never blocks on a delivery.
// epoch identifies the consumer c that delivered it (consumerEpoch). When
// the consumer's delivery sequence skips one, a delivery was lost on its
// way (it comes back after the ack wait), and msg, possibly the same
// user's later event, goes behind the gate at once.
func (p *pump) dispatch(msg jetstream.Msg, epoch int64, c jetstream.Consumer) {
	meta, err := msg.Metadata()
	if err != nil {
		p.log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	h := held{msg: msg, meta: meta, epoch: epoch}
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.lastSeq
	skipped := p.seqKnown && meta.Sequence.Consumer > prev+1
	p.lastSeq, p.seqKnown = max(prev, meta.Sequence.Consumer), true
	if p.holds(meta.Sequence.Stream) {
		// The server sent a message again that is still held here (a
		// keep-alive got lost): the copy held settles it.
		p.log.Debug("redelivery of an event already held; ignored", "stream_seq", meta.Sequence.Stream)
		return
	}
	p.seqs[meta.Sequence.Stream] = struct{}{}
	if skipped {
		p.log.Info("a delivery was lost on its way (the consumer's delivery sequence skipped); collecting until it comes back, to deliver each user's events in order",
			"after", prev, "got", meta.Sequence.Consumer)
		// A loss while already gated pushes the gate's end back: the
		// lost message comes back only after the ack wait.
		p.deadline = time.Now().Add(p.n.cfg.AckWait + 5*time.Second)
		if !p.gated {
			p.gated = true
			p.wg.Add(1)
			go p.watchGate(c)
		}
	}
	if p.gated {
		p.held++
		p.waiting = append(p.waiting, h)
		return
	}
	p.admit(h)
}

// admit puts h in its lane. Called with p.mu held.
func (p *pump) admit(h held) {
	p.held++
	p.enqueue(h)
}

// holds reports whether the message with stream sequence seq is held.
// Called with p.mu held. A set, not a walk of the lanes: this runs for
// every message received, with up to SINK_WINDOW held.
func (p *pump) holds(seq uint64) bool {
	_, ok := p.seqs[seq]
	return ok
}

// enqueue puts h in its user's lane, in stream order among the messages
// waiting there (msgs[0] is already being delivered). Called with p.mu held.
func (p *pump) enqueue(h held) {
	key := laneKey(h.msg.Subject())
	l := p.lanes[key]
	if l == nil {
		l = &lane{key: key, msgs: []held{h}}
		p.lanes[key] = l
		select {
		case p.idle <- l: // a lane goroutine waiting for work takes it
		default:
			p.wg.Add(1)
			go p.work(l)
		}
		return
	}
	i := len(l.msgs)
	for i > 1 && l.msgs[i-1].meta.Sequence.Stream > h.meta.Sequence.Stream {
		i--
	}
	l.msgs = slices.Insert(l.msgs, i, h)
}

// gate checks whether the consumer has messages pending that the pump does
// not hold (left by an earlier run, or lost on their way); if so it gates
// the pump until they have arrived. c is the consumer being read.
func (p *pump) gate(c jetstream.Consumer) {
	p.mu.Lock()
	if p.gated {
		p.mu.Unlock()
		return
	}
	held0, left0 := p.held, p.left
	p.mu.Unlock()
	info, err := p.info(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := 0
	if err == nil {
		pending = info.NumAckPending
		// The consumer's deliveries so far: the first delivery of this run
		// that skips one (lost on its way) shows as a gap.
		p.lastSeq, p.seqKnown = max(p.lastSeq, info.Delivered.Consumer), true
	}
	if err == nil && pending <= held0-int(p.left-left0) {
		return
	}
	p.gated = true
	p.deadline = time.Now().Add(p.n.cfg.AckWait + 5*time.Second)
	p.log.Info("messages pending that this run does not hold (left by an earlier run, or lost on their way); collecting them to deliver each user's in order",
		"pending", pending, "held", p.held, "err", err)
	p.wg.Add(1)
	go p.watchGate(c)
}

func (p *pump) info(c jetstream.Consumer) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(p.stopping, 5*time.Second)
	defer cancel()
	return c.Info(ctx)
}

func (p *pump) pending(c jetstream.Consumer) (int, error) {
	info, err := p.info(c)
	if err != nil {
		return 0, err
	}
	return info.NumAckPending, nil
}

// watchGate lifts the gate once the pump holds every pending message, when
// the deadline (p.deadline, pushed back by every further loss) passes (a
// message delivered to a dead subscriber comes back only after the ack
// wait; another notifier sharing the consumer would hold some for good), or
// when the pump stops.
func (p *pump) watchGate(c jetstream.Consumer) {
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
		p.mu.Lock()
		held0, left0 := p.held, p.left
		p.mu.Unlock()
		pending, err := p.pending(c)
		p.mu.Lock()
		held, left, deadline := p.held, p.left, p.deadline
		p.mu.Unlock()
		if err == nil && pending <= held0-int(left-left0) {
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
	waiting := p.waiting
	p.waiting, p.gated = nil, false
	p.held -= len(waiting)
	for _, h := range waiting {
		p.admit(h)
	}
	p.log.Info("gate lifted", "reason", reason, "collected", len(waiting))
}

// laneIdle is how long a lane goroutine whose lane emptied waits for
// another lane before it exits. Starting a goroutine for every lane cost a
// busy notifier more CPU than its deliveries' bookkeeping: each new one
// grows its stack to what an HTTP request needs, copying it twice or more.
const laneIdle = time.Second

// work runs l, then every lane handed to it (by enqueue, through p.idle)
// while it waits, and exits once none came for laneIdle or the pump is
// stopping.
func (p *pump) work(l *lane) {
	defer p.wg.Done()
	t := time.NewTimer(laneIdle)
	defer t.Stop()
	for {
		p.run(l)
		t.Reset(laneIdle)
		select {
		case l = <-p.idle:
		case <-t.C:
			return
		case <-p.stopping.Done():
			return
		}
	}
}

// run settles the lane's messages in order and returns when it is empty
// (and no longer in p.lanes).
func (p *pump) run(l *lane) {
	for {
		p.mu.Lock()
		if len(l.msgs) == 0 {
			delete(p.lanes, l.key)
			p.mu.Unlock()
			return
		}
		h := l.msgs[0]
		p.mu.Unlock()

		p.deliver(h, l.key)

		p.mu.Lock()
		l.msgs[0] = held{}
		l.msgs = l.msgs[1:]
		p.held--
		p.left++
		delete(p.seqs, h.meta.Sequence.Stream)
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
// acknowledges it), until the failure is permanent, MaxAttempts is reached
// or the event is older than MaxAge (then dead-letters it), or until the
// notifier stops (then releases it). Between attempts it waits as the
// schedule says (see retryWait).
func (p *pump) deliver(h held, key string) {
	msg := h.msg
	log := &msgLog{base: p.log, seq: h.meta.Sequence.Stream}
	if p.stopping.Err() != nil {
		p.release(msg, log)
		return
	}
	// A message the sink can send as it is is not decoded unless a failure
	// needs the event (its age, the log); AsBinary takes only messages
	// that decode, and none whose data may hold a secret to scrub.
	var (
		e       events.Event
		bin     events.Binary
		binary  bool
		decoded bool
		err     error
		id      string
	)
	if p.binary != nil {
		bin, binary = events.AsBinary(events.Headers(msg.Headers()), msg.Data())
	}
	if binary {
		id = bin.ID
	} else {
		e, err = events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
		decoded = true
		if err == nil {
			id = e.ID()
		}
	}
	if p.n.dead.hasLetter(id, p.sink.Name(), h.meta.Sequence.Stream, h.epoch) {
		// Dead-lettered already, delivered again because its Term was
		// lost (a crash, a failover): not attempted again.
		log.get().Info("event already dead-lettered; terminating the copy delivered again", "event", id)
		_ = msg.Term()
		return
	}
	if err != nil {
		p.deadLetter(h, "", fmt.Sprintf("undecodable message: %v", err), 0, 0, log)
		return
	}
	event := func() events.Event {
		if !decoded {
			// AsBinary took it, so it decodes.
			e, _ = events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
			decoded = true
		}
		return e
	}
	log.event = event
	attempts := 0 // counted: not probes, not attempts cut short
	for probe := false; ; {
		var err error
		if binary {
			err = p.send(nil, &bin)
		} else {
			err = p.send(&e, nil)
		}
		if errors.Is(err, errStopping) {
			p.release(msg, log)
			return
		}
		if err == nil {
			p.delivered(h, key, attempts+1, log)
			return
		}
		if p.cut.Err() != nil {
			// Cut off at shutdown: not known to be delivered.
			// Expected at a stop: the grace's end is logged once (close).
			log.get().Debug("delivery cut off at shutdown; event released for the next run", "err", err)
			p.release(msg, log)
			return
		}
		if !probe && !errors.Is(err, httpx.ErrNotSent) {
			attempts++ // a probe, or an event the sink held back unsent, is not an attempt
		}
		retry, after := httpx.Retryable(err)
		if reason, status, dead := p.verdict(event(), h, err, retry, attempts); dead {
			p.deadLetter(h, id, reason, status, max(attempts, 1), log)
			p.failed(key, false)
			return
		}
		p.failed(key, true)
		p.count(p.obs.retried)
		delay := p.n.retryDelay(max(attempts, 1), after)
		log.get().Warn("delivery failed; will retry", "err", err, "attempt", attempts, "probe", probe, "retry_in", delay.String())
		var ok bool
		if probe, ok = p.retryWait(delay, after); !ok {
			p.release(msg, log)
			return
		}
	}
}

// verdict decides whether a failed attempt dead-letters the event: a
// permanent failure, an event older than MaxAge, or MaxAttempts reached.
func (p *pump) verdict(e events.Event, h held, err error, retry bool, attempts int) (reason string, status int, dead bool) {
	var se *httpx.StatusError
	if errors.As(err, &se) {
		status = se.Code
	}
	switch {
	case !retry:
		return "permanent failure: " + err.Error(), status, true
	case p.n.cfg.MaxAge > 0 && eventAge(e, h.meta) > p.n.cfg.MaxAge:
		// Checked only once an attempt failed: an old event that the
		// sink takes is delivered (see Config.MaxAge).
		age := eventAge(e, h.meta).Round(time.Second)
		return fmt.Sprintf("too old: %s old, over the maximum age %s; attempt %d failed: %v", age, p.n.cfg.MaxAge, attempts, err), status, true
	case attempts >= p.n.cfg.MaxAttempts:
		return fmt.Sprintf("gave up after %d attempts: %v", attempts, err), status, true
	}
	return "", status, false
}

// delivered acknowledges a delivered message and records it.
func (p *pump) delivered(h held, key string, attempt int, log *msgLog) {
	p.ack(h.msg, log)
	p.succeeded(key)
	p.count(p.obs.delivered)
	if p.obs.latency != nil {
		p.obs.latency().Observe(time.Since(h.meta.Timestamp).Seconds())
	}
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		log.get().Debug("delivered", "attempt", attempt)
	}
}

// retryWait waits delay before the next attempt. It ends early — never
// before the sink's own Retry-After (floor) — when the sink recovers from
// an outage or a probe is due; probe then says the next attempt is a probe
// (not counted). ok is false when the notifier stops.
func (p *pump) retryWait(delay, floor time.Duration) (probe, ok bool) {
	// Taken before the floor's wait: a recovery during it still counts.
	p.health.mu.Lock()
	recovered := p.health.recovered
	p.health.mu.Unlock()
	if httpx.Sleep(p.stopping, floor) != nil {
		return false, false
	}
	t := time.NewTimer(delay - floor)
	defer t.Stop()
	select {
	case <-t.C:
		return false, true
	case <-recovered:
		return true, true
	case <-p.health.probe:
		return true, true
	case <-p.stopping.Done():
		return false, false
	}
}

// failed records a failed attempt of lane key. The sink is down when
// attempts of two lanes or more have failed since its last delivery and
// that was ProbeEvery ago or more: users that keep failing while others'
// events go through are stuck users, not an outage, and are left to their
// schedule.
func (p *pump) failed(key string, retryable bool) {
	if !retryable {
		return
	}
	h := &p.health
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failing[key] = true
	if h.down || len(h.failing) < 2 || time.Since(h.lastSuccess) < p.n.cfg.ProbeEvery {
		return
	}
	h.down, h.stopProbe = true, make(chan struct{})
	p.log.Warn("the sink is failing for several users; probing it every "+p.n.cfg.ProbeEvery.String()+" until it takes an event, then retrying everything waiting", "users_failing", len(h.failing))
	p.wg.Add(1)
	go p.prober(h.stopProbe)
}

// succeeded records a delivery of lane key; after an outage it wakes every
// waiting event.
func (p *pump) succeeded(key string) {
	h := &p.health
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSuccess = time.Now()
	clear(h.failing)
	if !h.down {
		return
	}
	h.down = false
	close(h.stopProbe)
	close(h.recovered)
	h.recovered = make(chan struct{})
	p.log.Info("the sink takes events again; retrying everything waiting now")
}

// prober hands one waiting lane a probe every ProbeEvery until the sink
// recovers or the pump stops.
func (p *pump) prober(stop <-chan struct{}) {
	defer p.wg.Done()
	t := time.NewTicker(p.n.cfg.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-p.stopping.Done():
			return
		case <-t.C:
		}
		select {
		case p.health.probe <- struct{}{}:
		case <-stop:
			return
		case <-p.stopping.Done():
			return
		case <-t.C: // nobody waiting this time
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
func (p *pump) ack(msg jetstream.Msg, log *msgLog) {
	if p.batching.Load() && p.acks.confirm(msg) {
		return
	}
	nc := p.n.js.Conn()
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err := ackOne(actx, nc, msg)
		cancel()
		if err == nil {
			return
		}
		if p.cut.Err() != nil || p.n.closed(err) {
			log.get().Warn("delivered but the ack failed at shutdown or with the connection closed; the event may be delivered again", "err", err)
			return
		}
		delay := p.n.cfg.Backoff.Delay(try, 0)
		log.get().Warn("delivered but the ack failed; sending the ack again", "err", err, "retry_in", delay.String())
		if httpx.Sleep(p.cut, delay) != nil {
			log.get().Warn("delivered but the ack failed at shutdown; the event may be delivered again", "err", err)
			return
		}
	}
}

// send makes one delivery attempt in a free slot: of e, or of b as it is
// when b is not nil. A send already under way when the notifier stops goes
// on until cut; none starts after the stop.
func (p *pump) send(e *events.Event, b *events.Binary) error {
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
	var err error
	if b != nil {
		err = p.binary.SendBinary(ctx, *b)
	} else {
		err = p.sink.Send(ctx, *e)
	}
	if p.obs.send != nil {
		p.obs.send().Observe(time.Since(start).Seconds())
	}
	return err
}

// count records a delivery outcome (a pumpMetrics counter).
func (p *pump) count(c func() prometheus.Counter) {
	if c != nil {
		c().Inc()
	}
}

// deadLetter stores the message on the dead-letter stream and terminates
// it. If the store fails the message stays at the head of its lane (later
// events of the user keep waiting) and the store is tried again; a stop
// releases it instead. A message too large to store is stored cut
// (publishDeadLetter), so a store fails only while NATS does.
func (p *pump) deadLetter(h held, eventID, reason string, status, attempts int, log *msgLog) {
	msg := h.msg
	for try := 1; ; try++ {
		err := p.n.publishDeadLetter(p.sink.Name(), h, eventID, reason, status, attempts)
		if err == nil {
			p.n.dead.add(DeadLetterMsgID(eventID, p.sink.Name(), h.meta.Sequence.Stream, h.epoch))
			log.get().Error("event dead-lettered", "reason", reason, "status", status, "attempts", attempts)
			p.count(p.obs.deadLettered)
			p.count(p.obs.deadLetters)
			_ = msg.Term()
			return
		}
		delay := p.n.cfg.Backoff.Delay(try, 0)
		log.get().Error("dead-letter publish failed; will retry, the event is kept", "err", err, "retry_in", delay.String())
		if httpx.Sleep(p.stopping, delay) != nil {
			p.release(msg, log)
			return
		}
	}
}

// release gives the message back to the server for the next run, once
// the subscription is gone.
func (p *pump) release(msg jetstream.Msg, log *msgLog) {
	<-p.drained
	if err := msg.Nak(); err != nil {
		log.get().Warn("releasing the event failed; it is redelivered after the ack wait", "err", err)
		return
	}
	log.get().Debug("event released")
}
