// Package bus owns rollcall's JetStream layout: the event stream, the state
// buckets and the baseline object store, and publishing a run's events with
// de-duplication ids.
package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/pkg/events"
)

// Names fixed by SPEC §2.3.
const (
	EventsStream     = "ROLLCALL_EVENTS"
	EventsSubjects   = "rollcall.events.>"
	DeadLetterStream = "ROLLCALL_DEADLETTER"
	DeadLetterPrefix = "rollcall.deadletter."
	UsersBucket      = "rollcall_users"
	SourcesBucket    = "rollcall_sources"
	BaselinesBucket  = "rollcall_baselines"
)

// Metadata of a baseline object.
const (
	// BaselineScrubbed marks a baseline whose raw records hold no secrets
	// (events.ScrubRaw): every one this release stores, and one an earlier
	// release stored once the poller has scrubbed it.
	BaselineScrubbed = "rollcall-scrubbed"
	// BaselineStored is when a rewritten baseline was first stored
	// (RFC 3339); the object's own time is then the rewrite's. Replay's
	// --as-of takes the baseline's time from it when it is there.
	BaselineStored = "rollcall-stored"
)

// Config sizes the stream and buckets.
type Config struct {
	Replicas        int           // NATS_REPLICAS
	MaxAge          time.Duration // EVENTS_MAX_AGE
	DuplicateWindow time.Duration // EVENTS_DUPLICATE_WINDOW
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 8760 * time.Hour
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 24 * time.Hour
	}
	return c
}

// Handles are the buckets a poller writes, and the event stream it reads
// back after a run that published but did not commit.
type Handles struct {
	Users     jetstream.KeyValue
	Sources   jetstream.KeyValue
	Baselines jetstream.ObjectStore
	Events    jetstream.Stream
}

// StreamConfig is the audit trail stream as SPEC §2.3 defines it.
func StreamConfig(c Config) jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "rollcall user change events (CloudEvents, binary mode)",
		Subjects:    []string{EventsSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.MaxAge,
		Duplicates:  c.DuplicateWindow,
		Replicas:    c.Replicas,
	}
}

// Ensure creates or updates the event stream, the buckets, the object store
// and the dead-letter stream.
//
// Each request is retried, within ctx, when it gets no answer in
// EnsureAttemptTimeout: on a new cluster the server may answer neither of
// two replicas racing to create the same stream (nats-server #3677), and a
// second try, by then an update, is answered at once. Creating or updating
// to the same configuration is idempotent, so a request that did land is
// harmless to repeat.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (*Handles, error) {
	c = c.withDefaults()
	stream, err := retryEnsure(ctx, "create stream "+EventsStream, func(ctx context.Context) (jetstream.Stream, error) {
		return js.CreateOrUpdateStream(ctx, StreamConfig(c))
	})
	if err != nil {
		return nil, err
	}
	users, err := retryEnsure(ctx, "create bucket "+UsersBucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: UsersBucket, Description: "rollcall: last known state of every user",
			Storage: jetstream.FileStorage, Replicas: c.Replicas, History: 1,
		})
	})
	if err != nil {
		return nil, err
	}
	srcs, err := retryEnsure(ctx, "create bucket "+SourcesBucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: SourcesBucket, Description: "rollcall: per-source cursors, health and leases",
			Storage: jetstream.FileStorage, Replicas: c.Replicas, History: 5,
		})
	})
	if err != nil {
		return nil, err
	}
	base, err := retryEnsure(ctx, "create object store "+BaselinesBucket, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: BaselinesBucket, Description: "rollcall: each source's first complete snapshot",
			Storage: jetstream.FileStorage, Replicas: c.Replicas,
		})
	})
	if err != nil {
		return nil, err
	}
	// The poller creates the dead-letter stream too: no notifier may create,
	// update or delete a stream (deployments/nats/accounts.conf).
	if err := EnsureDeadLetter(ctx, js, c.Replicas); err != nil {
		return nil, err
	}
	// The poller writes what it read with compare-and-set: it reads from
	// the leader (see LeaderReads).
	users, srcs = LeaderReads(js.Conn(), users), LeaderReads(js.Conn(), srcs)
	return &Handles{Users: users, Sources: srcs, Baselines: base, Events: stream}, nil
}

// DeadLetterDuplicateWindow is ROLLCALL_DEADLETTER's duplicate window: a
// message dead-lettered, then delivered again because its Term was lost (a
// crash, a failover), is stored once — the notifier gives a dead-lettering
// the same Nats-Msg-Id every time — within a week.
const DeadLetterDuplicateWindow = 7 * 24 * time.Hour

// EnsureDeadLetter creates the dead-letter stream the notifier writes
// (Ensure does it for the poller),
// retrying as Ensure does.
func EnsureDeadLetter(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas <= 0 {
		replicas = 1
	}
	_, err := retryEnsure(ctx, "create stream "+DeadLetterStream, func(ctx context.Context) (jetstream.Stream, error) {
		return js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: DeadLetterStream, Description: "rollcall events a sink could not deliver",
			Subjects: []string{DeadLetterPrefix + ">"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, Replicas: replicas, Duplicates: DeadLetterDuplicateWindow,
		})
	})
	return err
}

// EnsureAttemptTimeout bounds one create or update request of Ensure and
// EnsureDeadLetter before it is sent again.
var EnsureAttemptTimeout = 2 * time.Second

// retryEnsure runs one idempotent create-or-update until it is answered,
// sending it again when an attempt times out or finds no responder (a
// cluster still electing its leaders), until ctx ends. Any other error is
// the server's answer and is returned at once.
func retryEnsure[T any](ctx context.Context, what string, do func(context.Context) (T, error)) (T, error) {
	return Retry(ctx, what, do)
}

// WithoutDeadline returns a context that ends when ctx ends but has no
// deadline, and the function that releases it. A JetStream request whose
// context has no deadline is bounded by the client's default timeout
// (jetstream.WithDefaultTimeout); one whose context has a deadline waits
// for it. A service's requests must be bounded each: an answer lost with a
// connection (a server restarting) would otherwise hold the request, and
// whatever waits on it, until the caller's deadline, however far away.
func WithoutDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); !ok {
		return ctx, func() {}
	}
	c, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	return detached{Context: c, parent: ctx}, func() {
		stop()
		cancel(context.Canceled)
	}
}

// detached is WithoutDeadline's context: it reports the caller's error
// once the caller is done (context.DeadlineExceeded when its deadline
// passed), so that a run stopped by the deadline still says so.
type detached struct {
	context.Context
	parent context.Context
}

func (d detached) Err() error {
	err := d.Context.Err()
	if err == nil {
		return nil
	}
	if perr := d.parent.Err(); perr != nil {
		return perr
	}
	return err
}

// Retry runs one idempotent JetStream request until it is answered, as
// retryEnsure does: each attempt is bounded by EnsureAttemptTimeout, and
// an attempt unanswered (timed out, no responders) is sent again until ctx
// ends. A stream a cluster is still creating or electing a leader for does
// not answer at first; that is no reason to stop a service.
func Retry[T any](ctx context.Context, what string, do func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, EnsureAttemptTimeout)
		v, err := do(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		if !transient(err) || ctx.Err() != nil {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		if httpx.Sleep(ctx, min(time.Duration(attempt)*250*time.Millisecond, 2*time.Second)) != nil {
			return v, fmt.Errorf("%s: %w (after %d attempts)", what, err, attempt)
		}
	}
}

// transient reports whether a JetStream request may succeed if sent
// again: it was not answered (a leader being elected, a server restarting),
// or the answer was JetStream's 503, "JetStream system temporarily
// unavailable", which a cluster gives while it has no quorum.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.Code == 503
}

// Msg encodes an event as a NATS message on its subject, in binary content
// mode with Nats-Msg-Id set to the event id.
func Msg(e events.Event) (*nats.Msg, error) {
	h, body, err := events.ToHeaders(e)
	if err != nil {
		return nil, err
	}
	// The source name is the envelope's (urn:rollcall:source:<name>), which
	// events.New takes from data.user.source: decoding the data again just
	// to read it cost as much as encoding the headers.
	return &nats.Msg{Subject: events.Subject(events.SourceName(e), e.Subject(), e.Type()), Header: nats.Header(h), Data: body}, nil
}

// PublishResult counts what the stream did with a batch.
type PublishResult struct {
	Stored       int
	Duplicates   int            // dropped by JetStream's de-duplication window
	StoredByType map[string]int // Stored, per event type
}

// Publish sends every event and waits for every ack. It returns an error if
// any event was not stored; the caller must then write no state, and a rerun
// publishes the same ids again, which JetStream de-duplicates.
//
// Events go out in waves: a user's n-th event of the run is published only
// after every user's (n-1)-th was stored, and nothing of a later wave after a
// failure. So even a partly failed publish never stores a user's later event
// ahead of an earlier one, and per-user order on the stream holds.
func Publish(ctx context.Context, pub jetstream.Publisher, evs []events.Event) (PublishResult, error) {
	res := PublishResult{StoredByType: map[string]int{}}
	var waves [][]events.Event
	seen := make(map[string]int, len(evs))
	for _, e := range evs {
		n := seen[e.Subject()]
		seen[e.Subject()] = n + 1
		if n == len(waves) {
			waves = append(waves, nil)
		}
		waves[n] = append(waves[n], e)
	}
	for _, wave := range waves {
		// A publish that failed (a timeout during a leader election, a
		// reconnect) is sent again with the same id: if it had been stored
		// after all, JetStream drops the copy.
		var err error
		for attempt := 1; attempt <= publishAttempts; attempt++ {
			if wave, err = publishWave(ctx, pub, wave, &res); err == nil {
				break
			}
			if attempt == publishAttempts || httpx.Sleep(ctx, time.Duration(attempt)*250*time.Millisecond) != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// publishAttempts bounds how often one wave is sent before the run fails.
const publishAttempts = 4

// publishWave publishes evs and returns the ones that were not stored, to
// be sent again.
func publishWave(ctx context.Context, pub jetstream.Publisher, evs []events.Event, res *PublishResult) ([]events.Event, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var errs []error
	var failed []events.Event
	for i, e := range evs {
		m, err := Msg(e)
		if err != nil {
			return nil, err
		}
		f, err := pub.PublishMsgAsync(m, jetstream.WithExpectStream(EventsStream))
		if err != nil {
			// Not sent (e.g. disconnected): this one and the rest are
			// sent again once the acks of those already out are in.
			errs = append(errs, fmt.Errorf("publish %s %s: %w", e.Type(), e.ID(), err))
			failed = append(failed, evs[i:]...)
			break
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				res.Duplicates++
			} else {
				res.Stored++
				res.StoredByType[evs[i].Type()]++
			}
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish %s: %w", f.Msg().Subject, err))
			failed = append(failed, evs[i])
		case <-ctx.Done():
			return nil, fmt.Errorf("publish: waiting for acks: %w", ctx.Err())
		}
	}
	return failed, errors.Join(errs...)
}
