// Package post is the HTTP delivery step the webhook and Slack sinks share:
// send one request and turn the answer into nil, an *httpx.StatusError or a
// transport error that names no URL. Retry or not is then httpx's decision,
// never the sink's.
package post

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/redact"
)

// MessageLimit is how many bytes of an error response body become
// StatusError.Message, at most (an ellipsis included when the body was
// cut): enough for "channel_not_found" or a short JSON error, not enough to
// fill logs with an HTML error page.
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

// Doer sends one request: an *http.Client, or a Direct.
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}

// Direct is what a sink sends with when it is given no client: NewClient's
// transport, called without http.Client, whose work for redirects (a copy
// of every request's headers, kept in case one is followed) is never of
// use to a sink that follows none. It does what
// NewClient's client does for a request: no redirect is followed (a 3xx
// is the answer), credentials in the URL become Basic authorization
// unless the request has its own, and an error is a *url.Error that
// carries no URL.
type Direct struct {
	rt http.RoundTripper
}

// DoerOf is c, or a new Direct when c is nil (a sink given no client).
func DoerOf(c *http.Client) Doer {
	if c == nil {
		return NewDirect()
	}
	return c
}

// NewDirect returns a Direct with NewClient's transport.
func NewDirect() *Direct { return &Direct{rt: NewClient().Transport} }

// Do sends req once.
func (d *Direct) Do(req *http.Request) (*http.Response, error) {
	if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
		pw, _ := u.Password()
		req.SetBasicAuth(u.Username(), pw)
	}
	resp, err := d.rt.RoundTrip(req)
	if err != nil {
		// As http.Client says it: an https URL whose server answers in
		// plain HTTP.
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch
		}
		return nil, &url.Error{Op: req.Method, Err: err}
	}
	return resp, nil
}

// CloseIdleConnections closes the transport's idle connections.
func (d *Direct) CloseIdleConnections() {
	if c, ok := d.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
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

// Target is an endpoint parsed once: a sink that built each request from
// the URL's text parsed it again for every delivery.
type Target struct {
	url  *url.URL
	host string
}

// ParseTarget parses rawURL as http.NewRequest would. Its error never
// carries the URL, which for Slack is the credential itself.
func ParseTarget(op, rawURL string) (*Target, error) {
	req, err := NewRequest(context.Background(), op, rawURL)
	if err != nil {
		return nil, err
	}
	return &Target{url: req.URL, host: req.Host}, nil
}

// NewRequest builds a POST to t, bound to ctx, whose header map has room
// for headers entries (a map that grows past eight entries is copied).
func (t *Target) NewRequest(ctx context.Context, headers int) *http.Request {
	// The empty URL parses to an empty *url.URL: nothing to fail.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "", nil)
	u := *t.url // each request its own, as http.NewRequest gives
	req.URL, req.Host, req.Header = &u, t.host, make(http.Header, headers)
	return req
}

// Do sends req with client and reads the outcome. now is used to resolve a
// Retry-After given as an HTTP date. redact lists strings (the URL, its path)
// that must not appear in the returned error even if the server echoes them.
// Only what Message keeps of the body is ever exposed.
func Do(client Doer, req *http.Request, op string, now func() time.Time, redact ...string) error {
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
	// status code alone decides retry or not. More than MessageLimit is
	// read, so that a secret is redacted whole before the cut.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	se.Message = message(b, len(b) == bodyLimit, redact)
	return se
}

// bodyLimit is how much of an error body is read for its Message: enough
// for any secret that starts within MessageLimit bytes of the start to be
// redacted whole, with room for white space and control characters.
const bodyLimit = 8 << 10

// Message turns an error body into a one-line, valid UTF-8 explanation of
// at most MessageLimit bytes, without control characters (see
// redact.Excerpt), with every redact string replaced in every spelling
// redact.New knows — before the cut, so that no start of a secret survives
// it.
func Message(b []byte, redact ...string) string {
	return message(b, false, redact)
}

// message is Message for b that is the start of a longer body when more is
// set.
func message(b []byte, more bool, secrets []string) string {
	// Very short strings (a path of "/") are no secret, and replacing them
	// would mangle the message.
	long := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s) >= 4 {
			long = append(long, s)
		}
	}
	r := redact.New(long...)
	if more {
		return r.ExcerptPrefix(string(b), MessageLimit)
	}
	return r.Excerpt(string(b), MessageLimit)
}

// Endpoint validates a sink's endpoint (http(s) with a host) and returns
// every part of it that could be a credential, to scrub from server text
// quoted in errors. Its errors never quote the URL, which may carry a token
// (Slack's always does).
// minSecretPart is the length from which a path segment or query value of
// an endpoint is taken for a credential: shorter ones ("services",
// "hooks") are words an error may hold for other reasons.
const minSecretPart = 12

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
	// A receiver may echo one part of the URL alone ("webhook token
	// <token> revoked"): every path segment and query value long enough to
	// be a credential (a Slack webhook's token, a signature) goes too.
	for _, seg := range strings.Split(u.Path, "/") {
		if len(seg) >= minSecretPart {
			redact = append(redact, seg)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= minSecretPart {
				redact = append(redact, v)
			}
		}
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

// Identify names the endpoint raw points at without revealing it: its host
// (with the port when one is given), which may be logged, and an identity
// that changes whenever the URL does, path and query included, which may be
// stored (the hash of a URL that holds a token does not give the token
// away). Scheme and host are compared without regard to case, as URLs are.
func Identify(raw string) (host, id string) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		sum := sha256.Sum256([]byte(raw))
		return "", "sha256:" + hex.EncodeToString(sum[:16])
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	sum := sha256.Sum256([]byte(u.String()))
	return u.Host, "sha256:" + hex.EncodeToString(sum[:16])
}
