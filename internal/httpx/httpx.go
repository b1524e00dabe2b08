// Package httpx decides, in one place, what an HTTP outcome means for
// rollcall: delivered, worth retrying (and when), or permanent. Sources and
// sinks both use it, so a 429 means the same thing everywhere.
package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/redact"
)

// Outcome is what a status code means.
type Outcome int

const (
	OK        Outcome = iota // 2xx
	Retry                    // 408, 429, 5xx: try again later
	Permanent                // any other status: trying again will not help
)

// Classify maps a status code to its outcome: 2xx ok; 408, 429 and 5xx
// retry; everything else permanent.
func Classify(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return OK
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return Retry
	}
	return Permanent
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	// RetryAfter is the server's requested wait, zero when it gave none.
	RetryAfter time.Duration
	// Message is the server's own explanation, already stripped of secrets.
	Message string
}

func (e *StatusError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("http status %d: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("http status %d", e.Code)
}

// TransportError is a failure to get any answer. It drops the request URL,
// which for Slack and some webhooks is itself a secret.
type TransportError struct {
	Op  string
	Err error
}

func (e *TransportError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// StripURL turns an *url.Error from http.Client into a TransportError that
// does not mention the URL.
func StripURL(op string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &TransportError{Op: op, Err: ue.Err}
	}
	return &TransportError{Op: op, Err: err}
}

// Retryable reports whether err is worth retrying and how long the server
// asked to wait (0 = no request).
func Retryable(err error) (bool, time.Duration) {
	if err == nil {
		return false, 0
	}
	if errors.Is(err, context.Canceled) {
		return false, 0
	}
	var se *StatusError
	if errors.As(err, &se) {
		return Classify(se.Code) == Retry, se.RetryAfter
	}
	// A certificate the client does not trust will not become trusted by
	// asking again: the operator must fix the CA (VEEAM_CA_FILE).
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) {
		return false, 0
	}
	var te *TransportError
	var ne net.Error
	if errors.As(err, &te) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return true, 0
	}
	return false, 0
}

// MaxSeconds bounds every wait or lifetime a server states in seconds
// (Retry-After, retryAfter, expires_in): a larger value would overflow
// time.Duration (about 292 years) and come out negative, which means "retry
// now" or "log in before every request".
const MaxSeconds = 366 * 24 * time.Hour

// Seconds converts a server's count of seconds to a duration, clamped to
// [0, MaxSeconds]; NaN is 0.
func Seconds(s float64) time.Duration {
	switch {
	case !(s > 0): // also NaN
		return 0
	case s >= MaxSeconds.Seconds():
		return MaxSeconds
	}
	return time.Duration(s * float64(time.Second))
}

// RetryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return Seconds(float64(s)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), MaxSeconds), true
	}
	return 0, false
}

// Backoff is exponential backoff with full jitter, never below a server's
// Retry-After.
type Backoff struct {
	Base time.Duration // first delay; default 500ms
	Max  time.Duration // cap; default 30s
}

// Delay is the wait before retry number attempt (1-based), at least floor.
func (b Backoff) Delay(attempt int, floor time.Duration) time.Duration {
	base, max := b.Base, b.Max
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if max <= 0 {
		max = 30 * time.Second
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	// Full jitter over the upper half keeps a herd of clients apart without
	// ever collapsing the wait to nothing.
	d = d/2 + rand.N(d/2+1)
	if d < floor {
		d = floor
	}
	return d
}

// ErrNotSent is wrapped by a sink's error for an event it did not even
// send (Slack holding every post while its Retry-After runs): the caller
// waits and tries again, and the try does not count as a delivery attempt.
var ErrNotSent = errors.New("not sent")

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrBodyTooLarge is returned when a response exceeds its size limit.
var ErrBodyTooLarge = errors.New("response body too large")

// ReadBody reads at most limit bytes of r, failing rather than truncating.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, limit)
	}
	return b, nil
}

// RedirectTarget is where a 3xx answer points: its scheme and host[:port],
// cut and cleaned (the header is the server's text), without the path and
// query, which may carry a token; both empty when it has no usable
// Location. rollcall's clients never follow a redirect, and say this.
func RedirectTarget(resp *http.Response) (scheme, host string) {
	loc, err := resp.Location()
	if err != nil || loc.Host == "" {
		return "", ""
	}
	return redact.Excerpt(loc.Scheme, 16), redact.Excerpt(loc.Host, 255)
}
