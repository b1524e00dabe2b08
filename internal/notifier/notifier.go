// Package notifier delivers rollcall events from the stream to sinks: one
// durable JetStream consumer per sink, so a slow or failing sink never holds
// back another. A message is acknowledged only after its sink delivered it;
// retryable failures are redelivered with backoff and permanent ones are
// dead-lettered.
package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/pkg/events"
)

// Sink is what the notifier needs of a destination. Send returns nil when
// the event was delivered; errors are classified by httpx.Retryable.
type Sink interface {
	Name() string
	Send(ctx context.Context, e events.Event) error
}

// Route binds a sink to the events it wants.
type Route struct {
	Sink    Sink
	Types   []string // empty = every type
	Sources []string // empty = every source
	// Start is where a newly created consumer begins: "new" (default),
	// "all", or an RFC 3339 time. An existing consumer resumes where it was.
	Start string
}

// Config tunes delivery.
type Config struct {
	MaxAttempts int           // deliveries before dead-lettering; default 10
	Backoff     httpx.Backoff // between redeliveries
	SendTimeout time.Duration // per delivery; default 8s
	Logger      *slog.Logger
}

// Notifier runs every route's consumer.
type Notifier struct {
	js     jetstream.JetStream
	cfg    Config
	routes []Route
	log    *slog.Logger
}

// New builds a notifier.
func New(js jetstream.JetStream, cfg Config, routes ...Route) *Notifier {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 8 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{js: js, cfg: cfg, routes: routes, log: log}
}

// FilterSubjects turns a route's filters into consumer filter subjects.
func FilterSubjects(types, srcs []string) []string {
	if len(srcs) == 0 {
		srcs = []string{"*"}
	}
	var out []string
	for _, s := range srcs {
		if len(types) == 0 {
			out = append(out, events.SubjectPrefix+s+".>")
			continue
		}
		for _, t := range types {
			out = append(out, events.SubjectPrefix+s+".*."+t)
		}
	}
	return out
}

// WaitForStream blocks until the event stream exists, so a notifier started
// before its poller waits instead of failing.
func (n *Notifier) WaitForStream(ctx context.Context) error {
	logged := false
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.js.Stream(lctx, bus.EventsStream)
		cancel()
		if err == nil {
			return nil
		}
		if !logged && ctx.Err() == nil {
			n.log.Info("waiting for the event stream; is the poller running and NATS_URL right?", "stream", bus.EventsStream, "err", err)
			logged = true
		}
		if err := httpx.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// Run consumes for every route until ctx ends, when it returns nil, or
// until the NATS connection is closed for good, when it returns an error.
// In-flight deliveries finish (bounded by SendTimeout) before Run returns.
func (n *Notifier) Run(ctx context.Context) error {
	if err := n.WaitForStream(ctx); err != nil {
		return err
	}
	if err := bus.EnsureDeadLetter(ctx, n.js, 0); err != nil {
		return err
	}
	consumers := make([]jetstream.Consumer, len(n.routes))
	for i, r := range n.routes {
		c, err := n.consumer(ctx, r)
		if err != nil {
			return err
		}
		consumers[i] = c
	}
	// A sink that cannot go on (the connection is gone for good) stops the
	// others too, so that Run reports the failure instead of carrying on
	// with a sink silently missing.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(n.routes))
	for i, r := range n.routes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.consume(ctx, consumers[i], r); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// consumer creates the sink's durable consumer, or resumes it: the start
// position applies only on creation, filters are kept up to date.
func (n *Notifier) consumer(ctx context.Context, r Route) (jetstream.Consumer, error) {
	name := r.Sink.Name()
	filters := FilterSubjects(r.Types, r.Sources)
	c, err := n.js.Consumer(ctx, bus.EventsStream, name)
	if err == nil {
		cfg := c.CachedInfo().Config
		if !equal(cfg.FilterSubjects, filters) && !(len(filters) == 1 && cfg.FilterSubject == filters[0]) {
			cfg.FilterSubject, cfg.FilterSubjects = "", filters
			if c, err = n.js.UpdateConsumer(ctx, bus.EventsStream, cfg); err != nil {
				return nil, fmt.Errorf("sink %s: update consumer filters: %w", name, err)
			}
		}
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("sink %s: look up consumer: %w", name, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "rollcall notifier sink " + name,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        n.cfg.SendTimeout + 30*time.Second,
		FilterSubjects: filters,
		// One message in flight keeps every user's events in order.
		MaxAckPending: 1,
		MaxDeliver:    -1, // the notifier dead-letters after MaxAttempts itself
	}
	switch r.Start {
	case "", "new":
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case "all":
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		t, err := time.Parse(time.RFC3339, r.Start)
		if err != nil {
			return nil, fmt.Errorf("sink %s: start %q is not new, all or an RFC 3339 time", name, r.Start)
		}
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	c, err = n.js.CreateConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("sink %s: create consumer: %w", name, err)
	}
	n.log.Info("created consumer", "sink", name, "start", cfg.DeliverPolicy.String(), "filters", filters)
	return c, nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// consume delivers the route's messages until ctx ends. When the message
// iterator ends on its own (the consumer was deleted, the server rejected
// the pull) the consumer is looked up or created again, as on a first start,
// and consuming resumes; only a closed connection is fatal.
func (n *Notifier) consume(ctx context.Context, c jetstream.Consumer, r Route) error {
	sink := r.Sink
	log := n.log.With("sink", sink.Name())
	for {
		err := n.receive(ctx, c, sink, log)
		if ctx.Err() != nil {
			return nil
		}
		if n.closed(err) {
			return fmt.Errorf("sink %s: consume: %w", sink.Name(), err)
		}
		log.Warn("consumer stopped unexpectedly; re-establishing it", "err", err)
		for attempt := 1; ; attempt++ {
			if err := httpx.Sleep(ctx, n.cfg.Backoff.Delay(attempt, 0)); err != nil {
				return nil
			}
			if c, err = n.consumer(ctx, r); err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if n.closed(err) {
				return err
			}
			log.Warn("re-establishing the consumer failed; retrying", "err", err)
		}
	}
}

// closed reports whether err, or the connection, means NATS is gone for good.
func (n *Notifier) closed(err error) bool {
	if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) {
		return true
	}
	nc := n.js.Conn()
	return nc != nil && nc.IsClosed()
}

// release stops it and, unless the notifier is stopping, waits until its
// subscription is gone from the server. A pull request the old iterator
// left behind could otherwise be served by a recreated consumer of the same
// name, and the message sent to a dead inbox would hold the sink (one
// message in flight) until the ack wait expired.
func (n *Notifier) release(ctx context.Context, it jetstream.MessagesContext) {
	it.Stop()
	if ctx.Err() != nil {
		return
	}
	if c, ok := it.(interface{ Closed() <-chan struct{} }); ok {
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-c.Closed():
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
	if nc := n.js.Conn(); nc != nil && !nc.IsClosed() {
		_ = nc.FlushTimeout(5 * time.Second)
	}
}

// receive handles messages until the iterator ends, returning why it ended.
func (n *Notifier) receive(ctx context.Context, c jetstream.Consumer, sink Sink, log *slog.Logger) error {
	it, err := c.Messages()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer n.release(ctx, it)
	var last error
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			if last != nil && !errors.Is(err, jetstream.ErrConnectionClosed) {
				return fmt.Errorf("%w (after %w)", err, last)
			}
			return err
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("receive failed; retrying", "err", err)
			}
			last = err
			continue
		}
		last = nil
		n.handle(ctx, sink, msg, log)
	}
}

// handle delivers one message and settles it. It deliberately does not use
// ctx for the send: a delivery in flight at shutdown completes (bounded by
// SendTimeout) rather than being cut off and sent again.
func (n *Notifier) handle(ctx context.Context, sink Sink, msg jetstream.Msg, log *slog.Logger) {
	meta, err := msg.Metadata()
	if err != nil {
		log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	attempt := int(meta.NumDelivered)
	e, err := events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
	if err != nil {
		n.deadLetter(sink.Name(), msg, nil, fmt.Sprintf("undecodable message: %v", err), 0, attempt, log)
		return
	}
	log = log.With("event", e.ID(), "type", e.Type(), "subject", e.Subject(), "attempt", attempt)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.SendTimeout)
	err = sink.Send(sctx, e)
	cancel()
	if err == nil {
		if aerr := msg.DoubleAck(context.WithoutCancel(ctx)); aerr != nil {
			log.Warn("delivered but ack failed; the event may be delivered again", "err", aerr)
		}
		log.Debug("delivered")
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
		n.deadLetter(sink.Name(), msg, &e, "permanent failure: "+err.Error(), status, attempt, log)
	case attempt >= n.cfg.MaxAttempts:
		n.deadLetter(sink.Name(), msg, &e, fmt.Sprintf("gave up after %d attempts: %v", attempt, err), status, attempt, log)
	default:
		delay := n.cfg.Backoff.Delay(attempt, after)
		log.Warn("delivery failed; will retry", "err", err, "retry_in", delay.String())
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log.Warn("nak failed; the event is redelivered after the ack wait", "err", nerr)
		}
	}
}

// DeadLetter is the body of a message on ROLLCALL_DEADLETTER.
type DeadLetter struct {
	Sink     string          `json:"sink"`
	Reason   string          `json:"reason"`
	Status   int             `json:"status,omitempty"`
	Attempts int             `json:"attempts"`
	At       time.Time       `json:"at"`
	Event    json.RawMessage `json:"event"` // structured CloudEvent, or the raw body if undecodable
}

func (n *Notifier) deadLetter(sinkName string, msg jetstream.Msg, e *events.Event, reason string, status, attempts int, log *slog.Logger) {
	dl := DeadLetter{Sink: sinkName, Reason: reason, Status: status, Attempts: attempts, At: time.Now().UTC()}
	id := ""
	if e != nil {
		dl.Event, _ = json.Marshal(e)
		id = e.ID()
	} else {
		dl.Event, _ = json.Marshal(string(msg.Data()))
	}
	body, _ := json.Marshal(dl)
	m := nats.NewMsg(bus.DeadLetterPrefix + sinkName)
	m.Data = body
	if id != "" {
		m.Header.Set(jetstream.MsgIDHeader, id+"."+sinkName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.js.PublishMsg(ctx, m); err != nil {
		// Without the dead letter stored the event must not be dropped:
		// leave it to be redelivered.
		log.Error("dead-letter publish failed; event left for redelivery", "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	log.Error("event dead-lettered", "reason", reason, "status", status, "attempts", attempts)
	_ = msg.Term()
}
