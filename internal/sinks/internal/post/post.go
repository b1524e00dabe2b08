// Package post is the HTTP delivery step the webhook and Slack sinks share:
// send one request and turn the answer into nil, an *httpx.StatusError or a
// transport error that names no URL. Retry or not is then httpx's decision,
// never the sink's.
package post

import (
	"context"
	"errors"
	"fmt"
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
	// net/http refuses such a request before it reaches the network, with
	// an error that would look like a transport failure and be retried for
	// a day; checked here it fails for good at once.
	if err := CheckHeaders(req.Header); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
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

// ErrUnsendable is wrapped by the error for a request net/http refuses to
// send, whatever the endpoint: trying again cannot help. It wraps no
// transport or status error, so httpx.Retryable reports it permanent.
var ErrUnsendable = errors.New("request cannot be sent")

// HeaderError is a header net/http refuses to send: a name that is not an
// HTTP token, or a value with a control byte (anything below 0x20 but tab,
// and 0x7f), which would otherwise let a value such as an event id end the
// header early and inject others. It never quotes the value, which may be
// long or carry what the endpoint should not see in a log.
type HeaderError struct {
	Name string // the header's name as set
	// Offset is where in the value the first refused byte is; -1 when the
	// name itself is refused.
	Offset int
	Byte   byte // the refused byte of the value
}

func (e *HeaderError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("%v: header name %q is not an http token", ErrUnsendable, e.Name)
	}
	return fmt.Sprintf("%v: header %s has control byte %#02x at offset %d", ErrUnsendable, e.Name, e.Byte, e.Offset)
}

// Unwrap makes errors.Is(err, ErrUnsendable) hold.
func (e *HeaderError) Unwrap() error { return ErrUnsendable }

// CheckHeaders returns a *HeaderError for the first header (in name order,
// so the error is the same on every attempt) that net/http's transport
// would refuse, by the same rules (httpguts.ValidHeaderFieldName and
// ValidHeaderFieldValue).
func CheckHeaders(h http.Header) error {
	var bad *HeaderError
	for name, vs := range h {
		if bad != nil && name >= bad.Name {
			continue
		}
		if !validName(name) {
			bad = &HeaderError{Name: name, Offset: -1}
			continue
		}
		for _, v := range vs {
			if i := strings.IndexFunc(v, isCTL); i >= 0 {
				bad = &HeaderError{Name: name, Offset: i, Byte: v[i]}
				break
			}
		}
	}
	if bad != nil {
		return bad
	}
	return nil
}

func isCTL(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }

func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
