// Package slack is the sink that posts each event to a Slack incoming
// webhook as a message a person can read at a glance: who, what happened,
// which source, and when. A burst of events becomes one digest message
// instead (see Sink), so that a mass change never floods the channel.
//
// Slack answers 200 "ok" on success, 429 with Retry-After when rate
// limited, and a short error code in a text body otherwise
// ("invalid_payload", "no_service", "channel_not_found"); each non-2xx
// becomes an *httpx.StatusError carrying that code, and httpx decides
// whether it is worth retrying.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sinks/internal/post"
	"github.com/rollcall/rollcall/pkg/events"
)

// Sink posts events to one Slack incoming webhook. It is safe for
// concurrent use.
//
// # Digests
//
// The sink counts the events handed to Send within a sliding DigestWindow.
// While there are at most DigestThreshold, each event is posted as its own
// message at once. The event that makes it more opens a digest: it and
// every event after it are collected and, DigestWindow after the digest
// opened, posted together as one message (RenderDigest: counts per type
// and source, the first DigestUsers users, "…and N more"). The next event
// after that opens a new digest if the window still holds more than
// DigestThreshold events, and goes out on its own once it holds no more,
// that is once a window has passed at or below the threshold. So a channel
// gets at most DigestThreshold single messages in any window, plus about
// one digest per window while a mass change lasts.
//
// Send for an event in a digest blocks until the digest is posted and
// returns the post's result, shared by every event in it: nil, or the
// error (an *httpx.StatusError with its RetryAfter for a 429, a transport
// error) wrapped with the digest's size. The notifier then acknowledges
// exactly the delivered events, and retries each event of a failed digest;
// those retries, arriving together, form the next digest.
//
// When a waiting Send's context ends, Send returns at once with an error
// wrapping ctx.Err(), and its event is taken out of the digest, so that a
// digest never counts an event the notifier will deliver again. If the
// digest's post has already begun, the event may be in it and may appear
// once more when the notifier redelivers it: at-least-once, like every
// sink. A digest left empty by cancellations is not posted; one left with
// a single event is posted as that event's ordinary message.
//
// # Rate limits
//
// Slack rate-limits the webhook, not a message: after a 429 with
// Retry-After, the sink posts nothing (no message, no digest) until that
// time has passed. Each Send meanwhile returns at once, without posting or
// counting its event in the window, an error wrapping ErrHeld and a 429
// *httpx.StatusError whose RetryAfter is the time left, so the notifier
// retries it no sooner. Failing fast rather than waiting keeps sends from
// holding the notifier's slots and send timeout for up to a Retry-After,
// and the retries, arriving together once the time is up, form a digest
// instead of a burst that Slack would refuse again.
//
// # What the notifier must allow
//
// Because a Send in a digest can block for DigestWindow plus one post, the
// notifier must give this sink at least Concurrency() sends in flight (and
// as many unacknowledged messages: MaxAckPending), and at least
// SendTimeout() per Send. With fewer in flight a burst is still digested,
// but a digest can hold only what is in flight, so a mass change drains
// at that many events per window. With a shorter send timeout every
// waiting Send ends before its digest is posted and nothing in a burst is
// ever delivered.
type Sink struct {
	name    string
	url     string
	client  post.Doer
	timeout time.Duration
	redact  []string

	threshold int           // <0: digests off
	window    time.Duration // sliding window, and how long a digest collects
	users     int           // users a digest names
	now       func() time.Time
	afterFunc func(time.Duration, func()) // time.AfterFunc; a fake clock in tests

	mu       sync.Mutex
	arrivals []time.Time // Send calls within the last window, oldest first
	open     *digest     // collecting events; nil when none is
	// heldUntil is when Slack's Retry-After from the last 429 passes;
	// nothing is posted before. heldMessage is that 429's message.
	heldUntil   time.Time
	heldMessage string
}

// digest is a batch of events posted as one message. members is appended
// to and gone set under Sink.mu until taken; err is set before done is
// closed.
type digest struct {
	members []*member
	taken   bool // the post has the members: a cancelled Send no longer drops out
	done    chan struct{}
	err     error
}

type member struct {
	e    events.Event
	gone bool // its Send ended with its context before the post
}

// Name is the sink name.
func (s *Sink) Name() string { return s.name }

// label names the sink in its errors: its kind, and its name when that is
// not the kind too ("slack", not "slack slack").
func (s *Sink) label() string {
	if s.name == "slack" {
		return s.name
	}
	return "slack " + s.name
}

// Endpoint is the host the sink posts to, which may be logged, and an
// identity of its whole URL, which may be stored (post.Identify).
func (s *Sink) Endpoint() (host, id string) { return post.Identify(s.url) }

// Concurrency is how many Sends the notifier should allow in flight for
// this sink (and its consumer's MaxAckPending): max(4*DigestThreshold,
// 256), since a Send collected into a digest waits up to a window. It is 0
// when digests are off: the sink then needs nothing beyond the notifier's
// own setting, so use max(Config.Concurrency, Concurrency()).
func (s *Sink) Concurrency() int {
	if s.threshold < 0 {
		return 0
	}
	return max(4*s.threshold, minConcurrency)
}

// SendTimeout is the least per-Send timeout the notifier must allow this
// sink: DigestWindow for collecting, plus Timeout for the digest's post,
// plus a second; Timeout alone when digests are off, so that a Timeout
// above the notifier's own send timeout is honoured. A single message
// still gives up after Timeout. Use max(Config.SendTimeout, SendTimeout()).
func (s *Sink) SendTimeout() time.Duration {
	if s.threshold < 0 {
		return s.timeout
	}
	return s.window + s.timeout + time.Second
}

// Send posts the message for e, or adds e to a digest and waits for the
// digest's post (see Sink). While Slack's Retry-After from an earlier 429
// runs it posts nothing and returns an error wrapping ErrHeld (see
// ErrHeld).
func (s *Sink) Send(ctx context.Context, e events.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", s.label(), err)
	}
	m, err := Render(e)
	if err != nil {
		return fmt.Errorf("%s: %w", s.label(), err)
	}
	// Checked before admit so that an event turned away is not counted in
	// the digest window: it was not posted, and will come back.
	if err := s.held(); err != nil {
		return err
	}
	d, mem := s.admit(e)
	if d == nil {
		return s.Post(ctx, m)
	}
	return s.await(ctx, d, mem)
}

// Post sends an already rendered message, such as a digest from
// RenderDigest, with the same error contract as Send.
func (s *Sink) Post(ctx context.Context, m Message) error {
	if err := s.held(); err != nil {
		return err
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%s: encode message: %w", s.label(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := post.NewRequest(ctx, s.label(), s.url)
	if err != nil {
		return err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "rollcall-notifier")
	err = post.Do(s.client, req, s.label()+": post", s.now, s.redact...)
	s.hold(err)
	return err
}

// ErrHeld is wrapped by the error of a Send (or Post) that did not post
// because Slack answered an earlier post with 429 and a Retry-After that
// has not passed. Slack rate-limits the webhook, not a message, so every
// post until then would only be refused again and cost its event an
// attempt. The same error also wraps an *httpx.StatusError with Code 429
// and RetryAfter set to the time left, so httpx.Retryable reports it
// retryable no sooner than that, and the notifier waits it out.
var ErrHeld = fmt.Errorf("not posted while slack's retry-after runs: %w", httpx.ErrNotSent)

// hold starts or extends the hold after a post that ended in err.
func (s *Sink) hold(err error) {
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTooManyRequests || se.RetryAfter <= 0 {
		return
	}
	until := s.now().Add(se.RetryAfter)
	s.mu.Lock()
	defer s.mu.Unlock()
	if until.After(s.heldUntil) {
		s.heldUntil, s.heldMessage = until, se.Message
	}
}

// held is the error for a post made while a hold lasts, else nil.
func (s *Sink) held() error {
	s.mu.Lock()
	until, msg := s.heldUntil, s.heldMessage
	s.mu.Unlock()
	left := until.Sub(s.now())
	if left <= 0 {
		return nil
	}
	return fmt.Errorf("%s: %w, %s left: %w", s.label(), ErrHeld, left.Round(time.Millisecond),
		&httpx.StatusError{Code: http.StatusTooManyRequests, RetryAfter: left, Message: msg})
}
