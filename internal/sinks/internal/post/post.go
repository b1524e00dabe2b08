// Package post is the HTTP delivery step the webhook and Slack sinks share:
// send one request and turn the answer into nil, an *httpx.StatusError or a
// transport error that names no URL. Retry or not is then httpx's decision,
// never the sink's.
package post

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/httpx"
)

// MessageLimit is how much of an error response body becomes
// StatusError.Message: enough for "channel_not_found" or a short JSON error,
// not enough to fill logs with an HTML error page.
const MessageLimit = 200

// drainLimit bounds how much of a response is read so that the connection
// can be reused; a bigger body is cheaper to abandon than to read.
const drainLimit = 64 << 10

// NewClient is the client a sink uses when it is given none. It does not
// follow redirects: a delivery URL is configured exactly, and following a
// redirect would forward a signed body (or a Slack message) to a host nobody
// configured. A 3xx therefore surfaces as a permanent *httpx.StatusError.
//
// Its transport keeps up to MaxIdleConnsPerHost connections to an endpoint
// open between deliveries. http.DefaultTransport keeps two: a sink
// delivering 16 events at once (SINK_CONCURRENCY) then opened and closed a
// TCP (and TLS) connection for most deliveries, which cost more CPU than
// the deliveries themselves.
func NewClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	t.MaxIdleConns = max(t.MaxIdleConns, MaxIdleConnsPerHost)
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// MaxIdleConnsPerHost is how many idle connections a sink keeps to each
// endpoint: enough for the deliveries a sink has in flight at the default
// SINK_CONCURRENCY several times over.
const MaxIdleConnsPerHost = 64

// NewRequest builds a POST to rawURL. Its error never carries the URL, which
// for Slack is the credential itself.
func NewRequest(ctx context.Context, op, rawURL string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, nil)
	if err != nil {
		// Deliberately not wrapped: net/url errors quote the URL.
		return nil, errors.New(op + ": cannot build request")
	}
	return req, nil
}

// Do sends req with client and reads the outcome. now is used to resolve a
// Retry-After given as an HTTP date. redact lists strings (the URL, its path)
// that must not appear in the returned error even if the server echoes them.
// Only what Message keeps of the body is ever exposed.
func Do(client *http.Client, req *http.Request, op string, now func() time.Time, redact ...string) error {
	resp, err := client.Do(req)
	if err != nil {
		return httpx.StripURL(op, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		_ = resp.Body.Close()
	}()
	if httpx.Classify(resp.StatusCode) == httpx.OK {
		return nil
	}
	se := &httpx.StatusError{Code: resp.StatusCode}
	if d, ok := httpx.RetryAfter(resp.Header, now()); ok {
		se.RetryAfter = d
	}
	// A failure to read the explanation does not change the outcome: the
	// status code alone decides retry or not.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MessageLimit))
	se.Message = Message(b, redact...)
	return se
}

// Message turns the start of an error body into a one-line, valid UTF-8
// explanation with every redact string replaced.
func Message(b []byte, redact ...string) string {
	if len(b) > MessageLimit {
		b = b[:MessageLimit]
	}
	// Cut a rune split by the byte limit rather than leave a U+FFFD behind.
	for len(b) > 0 && !utf8.Valid(b) {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	for _, r := range redact {
		// Very short strings (a path of "/") are no secret, and replacing
		// them would mangle the message.
		if len(r) >= 4 {
			s = strings.ReplaceAll(s, r, "[redacted]")
		}
	}
	return s
}

// Endpoint validates a sink's endpoint (http(s) with a host) and returns
// every part of it that could be a credential, to scrub from server text
// quoted in errors. Its errors never quote the URL, which may carry a token
// (Slack's always does).
func Endpoint(raw string) (redact []string, err error) {
	if raw == "" {
		return nil, errors.New("url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Not wrapped: url.Parse quotes the URL in its error.
		return nil, errors.New("url is not a valid URL")
	}
	// http is allowed for local test servers and proxies.
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("url scheme must be http or https")
	}
	if u.Host == "" {
		return nil, errors.New("url has no host")
	}
	redact = []string{raw, u.String(), u.RawQuery, u.EscapedPath(), u.Path}
	if p, ok := u.User.Password(); ok {
		redact = append(redact, p)
	}
	return redact, nil
}
