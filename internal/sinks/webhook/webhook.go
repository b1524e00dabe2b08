// Package webhook is the sink that POSTs each event to an HTTP endpoint as a
// CloudEvent (binary content mode by default, structured on request), signed
// per the Standard Webhooks specification when secrets are configured.
//
// In binary mode every Ce-* header value is percent-encoded as the
// CloudEvents HTTP protocol binding 1.0.2 (section 3.1.3.2) requires, so a
// receiver must percent-decode it (JavaScript: decodeURIComponent); the
// CloudEvents JS and Go SDKs do not, and hand such values over encoded.
// Values rollcall makes itself (id, source, type, time, sourcekind) never
// need encoding; a subject (a source's user id) may.
//
// The webhook-id header is the event id, which stays the same across
// retries and redeliveries, so a receiver can de-duplicate on it; each
// attempt gets a fresh webhook-timestamp and signature.
package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/rollcall/rollcall/internal/sinks/internal/post"
	"github.com/rollcall/rollcall/pkg/events"
)

// Sink delivers events to one webhook endpoint. It is safe for concurrent use.
type Sink struct {
	name    string
	url     string
	target  *post.Target
	lbl     string // label(), built once
	postOp  string // label() + ": post"
	keys    [][]byte
	mode    string
	timeout time.Duration
	client  post.Doer
	now     func() time.Time
	redact  []string
}

// Name is the sink name.
func (s *Sink) Name() string { return s.name }

// label names the sink in its errors: its kind, and its name when that is
// not the kind too ("webhook", not "webhook webhook").
func (s *Sink) label() string { return s.lbl }

func labelOf(name string) string {
	if name == "webhook" {
		return name
	}
	return "webhook " + name
}

// Endpoint is the host the sink posts to, which may be logged, and an
// identity of its whole URL, which may be stored (post.Identify).
func (s *Sink) Endpoint() (host, id string) { return post.Identify(s.url) }

// Signed says whether deliveries carry a Standard Webhooks signature.
func (s *Sink) Signed() bool { return len(s.keys) > 0 }

// SendTimeout is the configured per-attempt Timeout. The notifier bounds
// each Send by max(its own send timeout, SendTimeout()), so a
// WEBHOOK_TIMEOUT above the notifier's default is honoured rather than cut
// short by it.
func (s *Sink) SendTimeout() time.Duration { return s.timeout }

// HeaderError is the error (wrapped) for an event that gives a header
// net/http refuses to send, such as an event id with a control byte in
// webhook-id, which unlike the Ce-* headers is sent as it is because the
// signature covers it. It wraps ErrUnsendable.
type HeaderError = post.HeaderError

// ErrUnsendable is wrapped by every error for a request that can never be
// sent. httpx.Retryable reports it permanent, so the notifier dead-letters
// the event at once.
var ErrUnsendable = post.ErrUnsendable

// Send POSTs e once. It returns nil on a 2xx, an *httpx.StatusError for any
// other status, an *httpx.TransportError when no answer came, and an error
// wrapping a *HeaderError (and ErrUnsendable) without sending anything when
// a header of e could never be sent; none of them mentions the URL.
func (s *Sink) Send(ctx context.Context, e events.Event) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	req, err := s.request(ctx, e)
	if err != nil {
		return err
	}
	return post.Do(s.client, req, s.postOp, s.now, s.redact...)
}

// bound limits ctx to the sink's Timeout. The notifier's own bound is
// usually that already (see SendTimeout): a second timer and context per
// delivery would then change nothing but cost CPU.
func (s *Sink) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && !d.After(time.Now().Add(s.timeout)) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Sink) request(ctx context.Context, e events.Event) (*http.Request, error) {
	req := s.target.NewRequest(ctx, 16)
	var body []byte
	if s.mode == ModeBinary && binaryHeaders(req.Header, e) {
		body = bytes.Clone(e.Data())
	} else {
		wctx := binding.WithForceBinary(ctx)
		if s.mode == ModeStructured {
			wctx = binding.WithForceStructured(ctx)
		}
		if err := cehttp.WriteRequest(wctx, binding.ToMessage(&e), req); err != nil {
			return nil, fmt.Errorf("%s: encode event %s: %w", s.label(), e.ID(), err)
		}
		// The signature covers the exact bytes sent, so read them back from
		// the request rather than re-encoding the event.
		if req.Body != nil {
			var err error
			body, err = io.ReadAll(req.Body)
			if err != nil {
				return nil, fmt.Errorf("%s: encode event %s: %w", s.label(), e.ID(), err)
			}
		}
	}
	if s.mode == ModeBinary {
		percentEncodeCE(req.Header)
	}
	s.finish(req, e.ID(), body)
	return req, nil
}

// finish sets what every request carries besides the event: the body, the
// User-Agent and, when signing, the Standard Webhooks headers for event id.
func (s *Sink) finish(req *http.Request, id string, body []byte) {
	setBody(req, body)
	req.Header["User-Agent"] = userAgent[:1:1]
	if len(s.keys) > 0 {
		ts := s.now().Unix()
		sigs := make([]string, len(s.keys))
		for i, k := range s.keys {
			sigs[i] = signature(k, id, ts, body)
		}
		req.Header.Set(HeaderID, id)
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, strings.Join(sigs, " "))
	}
}

// SendsBinary reports whether SendBinary may be used: in binary mode.
func (s *Sink) SendsBinary() bool { return s.mode == ModeBinary }

// SendBinary POSTs the message b once, exactly as Send would POST the event
// it holds (events.AsBinary guarantees that decoding and encoding it again
// gives the same headers and body): its ce-* headers, already
// percent-encoded as the binding requires, become the Ce-* headers and its
// body the body, without the event being decoded and encoded again, which
// cost a notifier more CPU than the rest of a delivery. Only in binary mode
// (SendsBinary); its outcomes are Send's.
func (s *Sink) SendBinary(ctx context.Context, b events.Binary) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	req, err := s.requestBinary(ctx, b)
	if err != nil {
		return err
	}
	return post.Do(s.client, req, s.postOp, s.now, s.redact...)
}

func (s *Sink) requestBinary(ctx context.Context, b events.Binary) (*http.Request, error) {
	if s.mode != ModeBinary {
		return nil, fmt.Errorf("%s: event %s: a message is sent as it is only in binary mode", s.label(), b.ID)
	}
	req := s.target.NewRequest(ctx, len(b.Header)+4)
	for k, vs := range b.Header {
		if len(vs) == 0 {
			continue
		}
		// The message's own value slices, capped so that an append to a
		// request header never writes into the message.
		if k == events.HeaderContentType {
			req.Header[k] = vs[:1:1]
		} else if name, ok := strings.CutPrefix(k, "ce-"); ok {
			req.Header[ceHeader(name)] = vs[:1:1]
		}
	}
	s.finish(req, b.ID, b.Body)
	return req, nil
}

// userAgent is every request's User-Agent header value.
var userAgent = []string{"rollcall-notifier"}

func setBody(req *http.Request, body []byte) {
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	// io.NopCloser of a *bytes.Reader, which net/http knows for a body in
	// memory: a type of its own (one allocation fewer) made the transport
	// send the headers and the body in two writes, which cost more CPU per
	// delivery than the allocation.
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

// binaryHeaders sets the headers cehttp.WriteRequest sets in binary mode
// (every attribute the event's spec version defines and is set, as
// Ce-<Name> or Content-Type, then every extension), without the generic
// binding machinery, which cost a notifier more CPU per delivery than the
// HTTP request. It reports false, having set nothing, for an event it does
// not handle the same way, which then goes through cehttp.
func binaryHeaders(h http.Header, e events.Event) bool {
	if e.Context == nil {
		return false
	}
	sv := spec.VS.Version(e.SpecVersion())
	if sv == nil {
		return false
	}
	type kv struct{ k, v string }
	var out [12]kv
	set := out[:0]
	for _, a := range sv.Attributes() {
		v := a.Get(e.Context)
		if v == nil {
			continue
		}
		s, err := types.Format(v)
		if err != nil {
			return false
		}
		k := ceHeader(a.Name())
		if a.Kind() == spec.DataContentType {
			k = "Content-Type"
		}
		set = append(set, kv{k, s})
	}
	for name, v := range e.Extensions() {
		if name == "" || name[0] >= 0x80 {
			return false
		}
		s, err := types.Format(v)
		if err != nil {
			return false
		}
		set = append(set, kv{"Ce-" + strings.ToUpper(name[:1]) + name[1:], s})
	}
	for _, p := range set {
		h[p.k] = append(h[p.k], p.v)
	}
	return true
}

// ceHeader is cehttp's header for an attribute: Ce-Id, Ce-Specversion, ...
func ceHeader(name string) string {
	switch name {
	case "id":
		return "Ce-Id"
	case "source":
		return "Ce-Source"
	case "type":
		return "Ce-Type"
	case "subject":
		return "Ce-Subject"
	case "time":
		return "Ce-Time"
	case "specversion":
		return "Ce-Specversion"
	case events.ExtSourceKind:
		return "Ce-Sourcekind" // every rollcall event's extension
	}
	return textproto.CanonicalMIMEHeaderKey("ce-" + name)
}

// percentEncodeCE percent-encodes every Ce-* header value as the
// CloudEvents HTTP protocol binding 1.0.2 (section 3.1.3.2) requires: an
// attribute such as the subject (a source's user id) may hold any Unicode,
// and sent raw it reached receivers as mojibake, or with a control byte
// could not be sent at all. Content-Type (datacontenttype) is a plain HTTP
// header and is left alone.
func percentEncodeCE(h http.Header) {
	for k, vs := range h {
		if !strings.HasPrefix(k, "Ce-") {
			continue
		}
		for i, v := range vs {
			vs[i] = percentEncode(v)
		}
	}
}

// percentEncode encodes space, double quote, percent and every byte
// outside printable ASCII (U+0021-U+007E) as %XY with upper-case hex, per
// UTF-8 byte of the character; everything else is kept. That is the
// encoding JavaScript's decodeURIComponent and the binding's decoders undo.
// A byte that is not valid UTF-8 is encoded as U+FFFD (%EF%BF%BD): the
// binding requires decoders to reject invalid UTF-8, and the JSON body
// carries the same replacement, so header and body still agree.
func percentEncode(v string) string {
	i := 0
	for i < len(v) && !mustEncode(v[i]) {
		i++
	}
	if i == len(v) {
		return v // the usual case: ids, sources, types and times need nothing
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(v) + 16)
	b.WriteString(v[:i])
	for i < len(v) {
		c := v[i]
		if !mustEncode(c) {
			b.WriteByte(c)
			i++
			continue
		}
		n := 1
		if c >= utf8.RuneSelf {
			var r rune
			if r, n = utf8.DecodeRuneInString(v[i:]); r == utf8.RuneError && n == 1 {
				b.WriteString("%EF%BF%BD")
				i++
				continue
			}
		}
		for _, c := range []byte(v[i : i+n]) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		i += n
	}
	return b.String()
}

func mustEncode(c byte) bool { return c <= ' ' || c >= 0x7f || c == '"' || c == '%' }
