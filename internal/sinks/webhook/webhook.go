// Package webhook is the sink that POSTs each event to an HTTP endpoint as a
// CloudEvent (binary content mode by default, structured on request), signed
// per the Standard Webhooks specification when secrets are configured.
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
	keys    [][]byte
	mode    string
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
	redact  []string
}

// Name is the sink name.
func (s *Sink) Name() string { return s.name }

// Send POSTs e once. It returns nil on a 2xx, an *httpx.StatusError for any
// other status and an *httpx.TransportError when no answer came; none of
// them mentions the URL.
func (s *Sink) Send(ctx context.Context, e events.Event) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := s.request(ctx, e)
	if err != nil {
		return err
	}
	return post.Do(s.client, req, "webhook "+s.name+": post", s.now, s.redact...)
}

func (s *Sink) request(ctx context.Context, e events.Event) (*http.Request, error) {
	req, err := post.NewRequest(ctx, "webhook "+s.name, s.url)
	if err != nil {
		return nil, err
	}
	var body []byte
	if s.mode == ModeBinary && binaryHeaders(req.Header, e) {
		body = bytes.Clone(e.Data())
	} else {
		wctx := binding.WithForceBinary(ctx)
		if s.mode == ModeStructured {
			wctx = binding.WithForceStructured(ctx)
		}
		if err := cehttp.WriteRequest(wctx, binding.ToMessage(&e), req); err != nil {
			return nil, fmt.Errorf("webhook %s: encode event %s: %w", s.name, e.ID(), err)
		}
		// The signature covers the exact bytes sent, so read them back from
		// the request rather than re-encoding the event.
		if req.Body != nil {
			body, err = io.ReadAll(req.Body)
			if err != nil {
				return nil, fmt.Errorf("webhook %s: encode event %s: %w", s.name, e.ID(), err)
			}
		}
	}
	setBody(req, body)
	req.Header.Set("User-Agent", "rollcall-notifier")
	if len(s.keys) > 0 {
		ts := s.now().Unix()
		sigs := make([]string, len(s.keys))
		for i, k := range s.keys {
			sigs[i] = signature(k, e.ID(), ts, body)
		}
		req.Header.Set(HeaderID, e.ID())
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, strings.Join(sigs, " "))
	}
	return req, nil
}

func setBody(req *http.Request, body []byte) {
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
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
	}
	return textproto.CanonicalMIMEHeaderKey("ce-" + name)
}
