// Package notifier delivers rollcall events from the stream to sinks: one
// durable JetStream consumer per sink, so a slow or failing sink never holds
// back another. A message is acknowledged only after its sink delivered it;
// retryable failures are retried with backoff and permanent ones are
// dead-lettered.
//
// Within a sink, deliveries run concurrently across users (up to
// Config.Concurrency, which is also the consumer's MaxAckPending) while each
// user's events go out one at a time, in stream order: messages are queued
// in per-user lanes keyed by the subject's <source>.<userkey>, and a lane
// takes its next message only once the previous one is settled (delivered,
// dead-lettered or released). Retries therefore happen in process, with the
// message kept alive by InProgress, rather than by a delayed Nak that would
// let the user's next event overtake it.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
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
	// Endpoint is where the sink delivers; zero for a sink with no remote
	// endpoint (the console). It is stored on the consumer, and a consumer
	// that delivered to one endpoint is not handed to another (its place in
	// the stream, its undelivered events) unless MoveEndpoint is set: a
	// reordered WEBHOOK_URL must not silently swap two receivers.
	Endpoint     Endpoint
	MoveEndpoint bool
	// Predecessors name consumers this sink's may take over: when the
	// sink's consumer is first created and one of them delivered to the
	// same endpoint, the new one starts where that one's acknowledged
	// events end, instead of at Start (a webhook moved from WEBHOOK_URL's
	// places to a name keeps its backlog).
	Predecessors []string
}

// Endpoint identifies a sink's destination: Host may be logged, ID (a hash
// of the whole URL) may be stored; neither gives a token in the URL away.
type Endpoint struct{ Host, ID string }

// Consumer metadata keys holding the Endpoint a consumer delivers to.
const (
	metaEndpoint     = "rollcall_endpoint"
	metaEndpointHost = "rollcall_endpoint_host"
)

// EndpointChangedError refuses to start a sink whose consumer delivered to
// another endpoint than the one now configured for it.
type EndpointChangedError struct {
	Sink    string
	Was, Is Endpoint
}

func (e *EndpointChangedError) Error() string {
	what := fmt.Sprintf("%s, but the configuration now gives it %s", hostOrUnknown(e.Was.Host), hostOrUnknown(e.Is.Host))
	if e.Was.Host == e.Is.Host {
		what = fmt.Sprintf("one URL on %s, but the configuration now gives it another", hostOrUnknown(e.Is.Host))
	}
	return fmt.Sprintf("sink %s: its consumer delivers to %s; starting would hand its place in the stream, and every event it has not delivered yet, to a different endpoint", e.Sink, what)
}

func hostOrUnknown(h string) string {
	if h == "" {
		return "an unnamed host"
	}
	return h
}

// endpointChange compares the endpoint stored on an existing consumer with
// the route's: nil when they agree, when the route has none, when the
// consumer predates stored endpoints (it is adopted), or when the route may
// move.
func endpointChange(cfg jetstream.ConsumerConfig, r Route) error {
	was := Endpoint{Host: cfg.Metadata[metaEndpointHost], ID: cfg.Metadata[metaEndpoint]}
	if r.Endpoint.ID == "" || was.ID == "" || was.ID == r.Endpoint.ID || r.MoveEndpoint {
		return nil
	}
	return &EndpointChangedError{Sink: r.Sink.Name(), Was: was, Is: r.Endpoint}
}

// setEndpoint stores r's endpoint on cfg; it says whether that changed it.
func setEndpoint(cfg *jetstream.ConsumerConfig, r Route) bool {
	if r.Endpoint.ID == "" || cfg.Metadata[metaEndpoint] == r.Endpoint.ID && cfg.Metadata[metaEndpointHost] == r.Endpoint.Host {
		return false
	}
	md := make(map[string]string, len(cfg.Metadata)+2)
	for k, v := range cfg.Metadata {
		md[k] = v
	}
	md[metaEndpoint], md[metaEndpointHost] = r.Endpoint.ID, r.Endpoint.Host
	cfg.Metadata = md
	return true
}

// DefaultSchedule is the wait before each retry of a delivery, Svix's:
// attempts at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later,
// so that an event is tried for about 27.5 hours before it is
// dead-lettered. A sink that is down for an hour, or a night, gets
// everything when it returns.
var DefaultSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Config tunes delivery.
type Config struct {
	// Schedule is the wait before each retry (DefaultSchedule when nil):
	// Schedule[0] after the first failed attempt, and so on; past its end
	// the last wait repeats. Every wait is at least what the sink asked
	// for (Retry-After), and varies by up to 10% so that retries of many
	// events spread out.
	Schedule []time.Duration
	// MaxAttempts is the delivery attempts before dead-lettering; default
	// len(Schedule)+1, the whole schedule. Attempts are counted by this
	// run of the notifier: an event released at shutdown (or delivered
	// again after a crash) starts again, so it is never dead-lettered
	// early; a release is not an attempt, nor is a probe of a sink that
	// is down (see ProbeEvery).
	MaxAttempts int
	// Backoff paces the notifier's own retries: storing a dead letter,
	// resending a lost ack, re-establishing a consumer.
	Backoff     httpx.Backoff
	SendTimeout time.Duration // per delivery; default 8s
	// Concurrency is how many deliveries a sink may have in flight, each
	// for a different user; default 16.
	Concurrency int
	// Window is how many messages a sink may hold at once — in flight,
	// waiting behind their user's earlier event, or between retries — the
	// consumer's MaxAckPending; default max(1024, 4×Concurrency). An
	// existing consumer is updated to it on start. It is far larger than
	// Concurrency so that users whose deliveries keep failing (each holds
	// its events while it waits to retry) never hold back the others: only
	// when the events waiting to be retried fill the whole window does the
	// sink stop taking new ones.
	Window int
	// ProbeEvery is how often, while a sink is down (attempts for two
	// users or more have failed with no success since), one waiting event
	// is tried out of its schedule; once one is delivered, every waiting
	// event is tried at once. Default 30s. Probes do not count as attempts.
	ProbeEvery time.Duration
	// ShutdownGrace is how long deliveries in flight when Run's context
	// ends may take to finish before they are cut off and their events
	// released for the next run; default 8s.
	ShutdownGrace time.Duration
	// AckWait is the consumer's ack wait: how soon a message lost with a
	// pull (a failover) is delivered again. Held messages are kept alive
	// with progress acks, so it can be short; default 10s, at least
	// SendTimeout + 2s.
	// Messages held longer (waiting behind a user's earlier event, or
	// between retries) are kept from redelivery with InProgress.
	AckWait time.Duration
	// MaxAge, when positive, bounds how long an event is retried: once an
	// attempt fails retryably and the event is older than MaxAge it is
	// dead-lettered ("too old: ...") instead of retried, even before
	// MaxAttempts. Its age is taken from the event's time (when it was
	// observed), or the stream's timestamp for an event without one.
	// Only a failed attempt dead-letters: an event that is old but
	// deliverable is delivered, so after a sink outage longer than MaxAge
	// the backlog is still attempted once per event, and only the events
	// that fail again are dead-lettered. 0 = no maximum age.
	MaxAge time.Duration
	// Replicas is kept for configurations that set it; the poller sizes
	// the dead-letter stream now (NATS_REPLICAS of the poller).
	Replicas int
	// Metrics records deliveries, latency, dead letters and each
	// consumer's pending counts; nil records nothing.
	Metrics *metrics.Notifier
	// PendingEvery is how often the consumers' pending counts are read
	// for Metrics; default 5s.
	PendingEvery time.Duration
	Logger       *slog.Logger
}

// Notifier runs every route's consumer.
type Notifier struct {
	js     jetstream.JetStream
	cfg    Config
	routes []Route
	log    *slog.Logger
	dead   *deadSet
}

// New builds a notifier.
func New(js jetstream.JetStream, cfg Config, routes ...Route) *Notifier {
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = len(cfg.Schedule) + 1
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 30 * time.Second
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 8 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Window <= 0 {
		cfg.Window = max(1024, 4*cfg.Concurrency)
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 8 * time.Second
	}
	if cfg.PendingEvery <= 0 {
		cfg.PendingEvery = 5 * time.Second
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = max(10*time.Second, cfg.SendTimeout+2*time.Second)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{js: js, cfg: cfg, routes: routes, log: log, dead: &deadSet{ids: map[string]struct{}{}}}
}

// concurrency is how many of a sink's events may be in flight: the
// notifier's setting, raised for a sink that batches (Slack digests hold
// every event of a burst until the digest is posted).
func (n *Notifier) concurrency(s Sink) int {
	if c, ok := s.(interface{ Concurrency() int }); ok {
		return max(n.cfg.Concurrency, c.Concurrency())
	}
	return n.cfg.Concurrency
}

// window is how many messages the sink's consumer may have unacknowledged:
// Config.Window, and at least the sink's own concurrency (Slack digests
// hold a whole burst).
func (n *Notifier) window(s Sink) int {
	return max(n.cfg.Window, n.concurrency(s))
}

// retryDelay is the wait after the attempts-th failed attempt: the
// schedule's, within 10%, and never less than the sink asked for.
func (n *Notifier) retryDelay(attempts int, floor time.Duration) time.Duration {
	s := n.cfg.Schedule
	d := s[min(attempts, len(s))-1]
	d = d - d/10 + rand.N(d/5+1)
	return max(d, floor)
}

// sendTimeout bounds one Send: the notifier's, raised for a sink whose Send
// waits for a batch (a digest window).
func (n *Notifier) sendTimeout(s Sink) time.Duration {
	if c, ok := s.(interface{ SendTimeout() time.Duration }); ok {
		return max(n.cfg.SendTimeout, c.SendTimeout())
	}
	return n.cfg.SendTimeout
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

// WaitForStream blocks until the event stream and the dead-letter stream
// exist (the poller creates both; the notifier may create no stream), so
// a notifier started before its poller waits instead of failing.
func (n *Notifier) WaitForStream(ctx context.Context) error {
	logged := false
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.js.Stream(lctx, bus.EventsStream)
		if err == nil {
			_, err = n.js.Stream(lctx, bus.DeadLetterStream)
		}
		cancel()
		if err == nil {
			return nil
		}
		if !logged && ctx.Err() == nil {
			n.log.Info("waiting for the event and dead-letter streams, which the poller creates; is the poller running and NATS_URL right?",
				"streams", []string{bus.EventsStream, bus.DeadLetterStream}, "err", err)
			logged = true
		}
		if err := httpx.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// Run consumes for every route until ctx ends, when it returns nil, or
// until the NATS connection is closed for good, when it returns an error.
// When ctx ends, no new delivery starts; deliveries in flight get
// ShutdownGrace to finish (and are acknowledged if they do); every other
// message the notifier holds is released with a Nak, in stream order per
// user, so that the next run delivers it. Nothing undelivered is acknowledged.
func (n *Notifier) Run(ctx context.Context) error {
	// Each NATS request is bounded by the client's timeout, never by a
	// far deadline of the caller (see bus.WithoutDeadline).
	ctx, release := bus.WithoutDeadline(ctx)
	defer release()
	consumers, err := n.setUp(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return err
	}
	// Said on a requested stop only, not when a failing sink stops the
	// others (that failure is what Run returns).
	// Run returns only once the line is written: a stop that finishes at
	// once (nothing in flight) returned before it, and the line was lost.
	said := make(chan struct{})
	stopped := context.AfterFunc(ctx, func() {
		defer close(said)
		n.log.Info("stopping: finishing the deliveries in flight, releasing the rest for the next start", "grace", n.cfg.ShutdownGrace.String())
	})
	defer func() {
		if !stopped() {
			<-said
		}
	}()
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
	if n.cfg.Metrics != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.watchPending(ctx, consumers)
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

// setUp waits for the streams, loads what was dead-lettered and creates or
// resumes every route's consumer.
func (n *Notifier) setUp(ctx context.Context) ([]jetstream.Consumer, error) {
	if err := n.WaitForStream(ctx); err != nil {
		return nil, err
	}
	if err := n.dead.load(ctx, n.js); err != nil {
		return nil, err
	}
	if err := n.checkEndpoints(ctx); err != nil {
		return nil, err
	}
	consumers := make([]jetstream.Consumer, len(n.routes))
	for i, r := range n.routes {
		c, err := n.consumer(ctx, r)
		if err != nil {
			return nil, err
		}
		consumers[i] = c
	}
	return consumers, nil
}

// checkEndpoints refuses, before any consumer is created or changed, every
// route whose existing consumer delivers to another endpoint (see
// Route.Endpoint): a start that fails changes nothing.
func (n *Notifier) checkEndpoints(ctx context.Context) error {
	return CheckEndpoints(ctx, n.js, n.routes)
}

// CheckEndpoints refuses every route whose sink's consumer delivers to
// another endpoint than the route's (EndpointChangedError, joined): what
// Run checks at start, and what a command that sends on a sink's behalf
// (a redrive of its dead letters) must check too.
func CheckEndpoints(ctx context.Context, js jetstream.JetStream, routes []Route) error {
	var errs []error
	for _, r := range routes {
		c, err := js.Consumer(ctx, bus.EventsStream, r.Sink.Name())
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sink %s: look up consumer: %w", r.Sink.Name(), err)
		}
		if err := endpointChange(c.CachedInfo().Config, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// watchPending keeps the pending gauges current until ctx ends. A failed
// read leaves the last value: the gauges say how far behind a sink is, and
// readiness already reports a lost connection.
func (n *Notifier) watchPending(ctx context.Context, consumers []jetstream.Consumer) {
	t := time.NewTicker(n.cfg.PendingEvery)
	defer t.Stop()
	for {
		for i, c := range consumers {
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := c.Info(ictx)
			cancel()
			if err != nil {
				continue
			}
			sink := n.routes[i].Sink.Name()
			n.cfg.Metrics.Pending.WithLabelValues(sink).Set(float64(info.NumPending))
			n.cfg.Metrics.AckPending.WithLabelValues(sink).Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// consumer creates the sink's durable consumer, or resumes it: the start
// position applies only on creation; filters, MaxAckPending (Concurrency)
// and the ack wait are brought up to date, so that a consumer created by an
// older notifier (one message in flight) gets the new limits.
func (n *Notifier) consumer(ctx context.Context, r Route) (jetstream.Consumer, error) {
	name := r.Sink.Name()
	filters := FilterSubjects(r.Types, r.Sources)
	c, err := n.js.Consumer(ctx, bus.EventsStream, name)
	if err == nil {
		cfg := c.CachedInfo().Config
		if err := endpointChange(cfg, r); err != nil {
			return nil, err
		}
		var changed []any
		if was := cfg.Metadata[metaEndpointHost]; setEndpoint(&cfg, r) {
			changed = append(changed, "endpoint_was", was, "endpoint", r.Endpoint.Host)
		}
		if !equal(cfg.FilterSubjects, filters) && !(len(filters) == 1 && cfg.FilterSubject == filters[0]) {
			changed = append(changed, "filters", filters)
			cfg.FilterSubject, cfg.FilterSubjects = "", filters
		}
		if want := n.window(r.Sink); cfg.MaxAckPending != want {
			changed = append(changed, "max_ack_pending_was", cfg.MaxAckPending, "max_ack_pending", want)
			cfg.MaxAckPending = want
		}
		if cfg.AckWait != n.cfg.AckWait {
			changed = append(changed, "ack_wait", n.cfg.AckWait.String())
			cfg.AckWait = n.cfg.AckWait
		}
		if len(changed) > 0 {
			if c, err = n.js.UpdateConsumer(ctx, bus.EventsStream, cfg); err != nil {
				return nil, fmt.Errorf("sink %s: update consumer: %w", name, err)
			}
			n.log.Info("updated consumer", append([]any{"sink", name}, changed...)...)
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
		AckWait:        n.cfg.AckWait,
		FilterSubjects: filters,
		// Per-user lanes keep each user's events in order; this bounds the
		// messages held (in flight, waiting or between retries) per sink.
		MaxAckPending: n.window(r.Sink),
		MaxDeliver:    -1, // the notifier dead-letters after MaxAttempts itself
	}
	setEndpoint(&cfg, r)
	if from, was, ok := n.predecessor(ctx, r); ok {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
		n.log.Info("new consumer continues where its predecessor at the same endpoint left off", "sink", name, "predecessor", was, "start_seq", from,
			"what_to_do", "once the sink delivers, the predecessor can be removed: nats consumer rm "+bus.EventsStream+" "+was)
		return n.create(ctx, cfg, filters)
	}
	switch r.Start {
	case "", "new":
		// "New" is fixed here, at the stream's last sequence now, not left
		// to DeliverNewPolicy: a replicated consumer fixes that start only
		// when its leader takes it up, after CreateConsumer has returned,
		// and events stored meanwhile were never delivered (review 16b:
		// 40–80 of 300 on a three-node cluster).
		s, err := n.js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return nil, fmt.Errorf("sink %s: read the stream's position to start at new events: %w", name, err)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.CachedInfo().State.LastSeq+1
	case "all":
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		t, err := time.Parse(time.RFC3339, r.Start)
		if err != nil {
			return nil, fmt.Errorf("sink %s: start %q is not new, all or an RFC 3339 time", name, r.Start)
		}
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	return n.create(ctx, cfg, filters)
}

func (n *Notifier) create(ctx context.Context, cfg jetstream.ConsumerConfig, filters []string) (jetstream.Consumer, error) {
	c, err := n.js.CreateConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("sink %s: create consumer: %w", cfg.Durable, err)
	}
	n.log.Info("created consumer", "sink", cfg.Durable, "start", cfg.DeliverPolicy.String(), "start_seq", cfg.OptStartSeq, "filters", filters, "max_ack_pending", cfg.MaxAckPending)
	return c, nil
}

// predecessor finds, among r's Predecessors, a consumer that delivered to
// r's endpoint, and the stream sequence after its acknowledged events. A
// consumer that recorded no endpoint (an older notifier's) is not taken:
// nothing says where it delivered.
func (n *Notifier) predecessor(ctx context.Context, r Route) (uint64, string, bool) {
	if r.Endpoint.ID == "" {
		return 0, "", false
	}
	for _, name := range r.Predecessors {
		c, err := n.js.Consumer(ctx, bus.EventsStream, name)
		if err != nil {
			continue
		}
		info, err := c.Info(ctx)
		if err != nil || info.Config.Metadata[metaEndpoint] != r.Endpoint.ID {
			continue
		}
		return info.AckFloor.Stream + 1, name, true
	}
	return 0, "", false
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
// and consuming resumes; only a closed connection is fatal. The sink's lanes
// outlive a re-established iterator: the messages they hold are settled as
// usual. consume returns only once every lane is settled or released.
func (n *Notifier) consume(ctx context.Context, c jetstream.Consumer, r Route) error {
	sink := r.Sink
	log := n.log.With("sink", sink.Name())
	p := n.newPump(ctx, sink, log)
	defer p.close()
	for {
		err := n.receive(ctx, c, p, log)
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
// name, and the messages sent to a dead inbox would take up the sink's
// MaxAckPending until the ack wait expired.
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

// receive hands messages to the sink's lanes until the iterator ends,
// returning why it ended. When ctx ends the iterator is drained rather than
// stopped: the messages it had already buffered go to their lanes too, which
// release them in order, instead of being dropped and left to the ack wait.
func (n *Notifier) receive(ctx context.Context, c jetstream.Consumer, p *pump, log *slog.Logger) error {
	p.gate(c)
	p.batching.Store(n.batchable(ctx, c))
	it, err := c.Messages()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Drain)
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
				// Pulls lost with a server or consumer leader may hold
				// messages this run never got; they come back after the
				// ack wait. Until then newer messages wait, so that no
				// user's later event overtakes a lost earlier one.
				p.gate(c)
			}
			last = err
			continue
		}
		last = nil
		p.dispatch(msg, consumerEpoch(c), c)
	}
}

// batchable reports whether the acks of c's messages may be confirmed in
// batches (batchAcks): only when c has one replica. A replicated
// consumer's leader can change between a batch's plain acks and its last,
// answered one, and the old leader may then drop the earlier acks while
// the new one answers (review 16b, from reading the server): those events
// would come back after the ack wait, out of their user's order. Each ack
// is then confirmed on its own. A consumer of no replicas of its own has
// the stream's; when that cannot be read, acks are not batched.
func (n *Notifier) batchable(ctx context.Context, c jetstream.Consumer) bool {
	info := c.CachedInfo()
	if info == nil || info.Cluster != nil && len(info.Cluster.Replicas) > 0 {
		return false
	}
	r := info.Config.Replicas
	if r == 0 {
		s, err := n.js.Stream(ctx, info.Stream)
		if err != nil {
			return false
		}
		r = s.CachedInfo().Config.Replicas
	}
	return r <= 1
}

// consumerEpoch identifies one incarnation of a sink's consumer: its
// creation time, which the server keeps across restarts and updates and
// which changes only when the consumer is deleted and created again.
func consumerEpoch(c jetstream.Consumer) int64 {
	if info := c.CachedInfo(); info != nil && !info.Created.IsZero() {
		return info.Created.UnixNano()
	}
	return 0
}

// laneKey is the user a subject belongs to:
// rollcall.events.<source>.<userkey>.<type> gives <source>.<userkey>. A
// subject of another shape is a lane of its own.
func laneKey(subject string) string {
	rest, ok := strings.CutPrefix(subject, events.SubjectPrefix)
	if !ok {
		return subject
	}
	src, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return subject
	}
	user, _, _ := strings.Cut(rest, ".")
	return src + "." + user
}
