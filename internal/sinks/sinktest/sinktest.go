// Package sinktest is the conformance suite every notifier sink runs, in the
// manner of go-cloud's drivertest: the suite owns an HTTP server whose
// answers it controls and checks that the sink turns each answer into the
// outcome the notifier relies on (nil, an *httpx.StatusError classified by
// httpx, or a transport error), that it gives up when its context ends or
// its timeout passes, and that the delivery URL, often a credential, never
// appears in an error.
package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/pkg/events"
)

// Sink is the notifier's view of a sink.
type Sink interface {
	Name() string
	Send(ctx context.Context, e events.Event) error
}

// SecretPath is the path of every URL the suite hands to NewSink. It looks
// like a Slack webhook so that a leak is easy to spot.
const SecretPath = "/services/T000/B000/SECRETxyz"

// Harness adapts one sink to the suite.
type Harness struct {
	// NewSink builds the sink under test delivering to url. A sink that
	// does not speak HTTP (console) ignores url.
	NewSink func(t *testing.T, url string) Sink
	// HTTP says the sink delivers over HTTP. When false the suite runs only
	// the delivery, concurrency and cancellation checks, and reads what was
	// delivered through Delivered.
	HTTP bool
	// Timeout is the per-attempt timeout NewSink configures; the hang check
	// expects Send to give up within it. Keep it short (say 1s). Required
	// when HTTP is set.
	Timeout time.Duration
	// CloudEvents says each request is a CloudEvent in HTTP binding form;
	// the suite decodes it with the SDK and compares it with what was sent.
	CloudEvents bool
	// CheckRequest, if set, checks a sink-specific part of each delivered
	// request.
	CheckRequest func(t *testing.T, r *http.Request, body []byte, sent events.Event)
	// Delivered returns the events a non-HTTP sink has delivered so far, in
	// order.
	Delivered func(t *testing.T) []events.Event
}

// RunConformance runs the whole suite against h.
func RunConformance(t *testing.T, h Harness) {
	t.Helper()
	if h.NewSink == nil {
		t.Fatal("sinktest: Harness.NewSink is nil")
	}
	if h.HTTP && h.Timeout <= 0 {
		t.Fatal("sinktest: Harness.Timeout is required for an HTTP sink")
	}
	if !h.HTTP && h.Delivered == nil {
		t.Fatal("sinktest: Harness.Delivered is required for a non-HTTP sink")
	}
	t.Run("Name", func(t *testing.T) { testName(t, h) })
	t.Run("Delivers", func(t *testing.T) { testDelivers(t, h) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("CancelledBeforeSend", func(t *testing.T) { testCancelledBefore(t, h) })
	if !h.HTTP {
		return
	}
	t.Run("Status", func(t *testing.T) { testStatus(t, h) })
	t.Run("RetryAfter", func(t *testing.T) { testRetryAfter(t, h) })
	t.Run("HangCancelled", func(t *testing.T) { testHangCancelled(t, h) })
	t.Run("HangTimeout", func(t *testing.T) { testHangTimeout(t, h) })
	t.Run("TransportError", func(t *testing.T) { testTransport(t, h) })
	t.Run("EchoedURLRedacted", func(t *testing.T) { testEcho(t, h) })
}

// request is what the server received.
type request struct {
	r    *http.Request
	body []byte
}

// server is an httptest server whose answer the test sets.
type server struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	handler http.HandlerFunc
}

func newServer(t *testing.T, handler http.HandlerFunc) *server {
	t.Helper()
	s := &server{handler: handler}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mu.Lock()
		s.reqs = append(s.reqs, request{r: r.Clone(context.Background()), body: body})
		s.mu.Unlock()
		s.handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// URL is the secret-looking delivery URL.
func (s *server) url() string { return s.Server.URL + SecretPath }

func (s *server) received() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

func answer(code int, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// event returns a valid event distinct for each n.
func event(t testing.TB, n int) events.Event {
	t.Helper()
	e := NewEvent(t)
	d, err := events.DecodeData(e)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := events.New(events.Spec{Type: e.Type(), PrevRevision: uint64(100 + n), User: d.User,
		Previous: d.Previous, Changes: d.Changes, Reason: d.Reason, Observed: e.Time()})
	if err != nil {
		t.Fatal(err)
	}
	return e2
}

// noLeak fails when err's text contains the delivery URL or its secret.
func noLeak(t *testing.T, err error, url string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range []string{url, SecretPath, "SECRETxyz", "T000/B000"} {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error %q contains %q", msg, s)
		}
	}
}

func testName(t *testing.T, h Harness) {
	s := h.NewSink(t, "http://127.0.0.1:9"+SecretPath)
	if s.Name() == "" {
		t.Error("Name() is empty; it names the durable consumer")
	}
}

func testDelivers(t *testing.T, h Harness) {
	e := event(t, 1)
	if !h.HTTP {
		s := h.NewSink(t, "")
		if err := s.Send(context.Background(), e); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got := h.Delivered(t)
		if len(got) != 1 {
			t.Fatalf("delivered %d events, want 1", len(got))
		}
		sameEvent(t, got[0], e)
		return
	}
	for _, code := range []int{200, 201, 202, 204} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := newServer(t, answer(code, "ok"))
			s := h.NewSink(t, srv.url())
			if err := s.Send(context.Background(), e); err != nil {
				t.Fatalf("Send on %d: %v, want nil", code, err)
			}
			reqs := srv.received()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.r.Method != http.MethodPost || r.r.URL.Path != SecretPath {
				t.Errorf("request %s %s, want POST %s", r.r.Method, r.r.URL.Path, SecretPath)
			}
			if h.CloudEvents {
				in := r.r.Clone(context.Background())
				in.Body = io.NopCloser(bytes.NewReader(r.body))
				m := cehttp.NewMessageFromHttpRequest(in)
				got, err := binding.ToEvent(context.Background(), m)
				if err != nil {
					t.Fatalf("decode request as a CloudEvent: %v", err)
				}
				sameEvent(t, *got, e)
			}
			if h.CheckRequest != nil {
				h.CheckRequest(t, r.r, r.body, e)
			}
		})
	}
}

// sameEvent checks that got is e as far as any receiver can tell.
func sameEvent(t *testing.T, got, want events.Event) {
	t.Helper()
	if got.ID() != want.ID() || got.Type() != want.Type() || got.Source() != want.Source() ||
		got.Subject() != want.Subject() || !got.Time().Equal(want.Time()) {
		t.Errorf("delivered event\n%v\nwant\n%v", got, want)
	}
	if k := got.Extensions()[events.ExtSourceKind]; fmt.Sprint(k) != fmt.Sprint(want.Extensions()[events.ExtSourceKind]) {
		t.Errorf("sourcekind %v, want %v", k, want.Extensions()[events.ExtSourceKind])
	}
	gd, err := events.DecodeData(got)
	if err != nil {
		t.Fatalf("delivered data: %v", err)
	}
	wd, _ := events.DecodeData(want)
	if gd.User.ID != wd.User.ID || gd.User.Role != wd.User.Role || len(gd.Changes) != len(wd.Changes) || gd.Reason != wd.Reason {
		t.Errorf("delivered data %+v, want %+v", gd, wd)
	}
	if err := events.Validate(got); err != nil {
		t.Errorf("delivered event is not valid: %v", err)
	}
}

func testConcurrent(t *testing.T, h Harness) {
	const n = 16
	var srv *server
	url := ""
	if h.HTTP {
		srv = newServer(t, answer(200, "ok"))
		url = srv.url()
	}
	s := h.NewSink(t, url)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Send(context.Background(), event(t, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Send: %v", err)
		}
	}
	got := 0
	if h.HTTP {
		got = len(srv.received())
	} else {
		got = len(h.Delivered(t))
	}
	if got != n {
		t.Errorf("delivered %d of %d concurrent sends", got, n)
	}
}

func testCancelledBefore(t *testing.T, h Harness) {
	var srv *server
	url := ""
	if h.HTTP {
		srv = newServer(t, answer(200, "ok"))
		url = srv.url()
	}
	s := h.NewSink(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Send(ctx, event(t, 1))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context: %v, want an error wrapping context.Canceled", err)
	}
	noLeak(t, err, url)
	got := 0
	if h.HTTP {
		got = len(srv.received())
	} else {
		got = len(h.Delivered(t))
	}
	if got != 0 {
		t.Errorf("a cancelled Send delivered %d events", got)
	}
}

func testStatus(t *testing.T, h Harness) {
	cases := []struct {
		code int
		body string
		want httpx.Outcome
	}{
		{301, "", httpx.Permanent}, // redirects are not followed
		{400, "invalid_payload", httpx.Permanent},
		{401, "unauthorized", httpx.Permanent},
		{403, "action_prohibited", httpx.Permanent},
		{404, "no_service", httpx.Permanent},
		{410, "channel_is_archived", httpx.Permanent},
		{408, "request timeout", httpx.Retry},
		{429, "rate_limited", httpx.Retry},
		{500, "internal error", httpx.Retry},
		{502, "bad gateway", httpx.Retry},
		{503, "unavailable", httpx.Retry},
		{520, "unknown error", httpx.Retry},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			hdr := []string{}
			if c.code == 301 {
				hdr = []string{"Location", "/elsewhere"}
			}
			srv := newServer(t, answer(c.code, c.body, hdr...))
			s := h.NewSink(t, srv.url())
			err := s.Send(context.Background(), event(t, 1))
			var se *httpx.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Send on %d: %v (%T), want *httpx.StatusError", c.code, err, err)
			}
			if se.Code != c.code {
				t.Errorf("StatusError.Code %d, want %d", se.Code, c.code)
			}
			if got := httpx.Classify(se.Code); got != c.want {
				t.Errorf("Classify(%d) = %v, want %v", se.Code, got, c.want)
			}
			if retry, _ := httpx.Retryable(err); retry != (c.want == httpx.Retry) {
				t.Errorf("Retryable = %v for %d", retry, c.code)
			}
			if c.body != "" && !strings.Contains(se.Message, c.body) {
				t.Errorf("StatusError.Message %q does not carry the server's %q", se.Message, c.body)
			}
			if se.RetryAfter != 0 {
				t.Errorf("RetryAfter %v without a Retry-After header", se.RetryAfter)
			}
			if len(srv.received()) != 1 {
				t.Errorf("server got %d requests; a sink makes one attempt, the notifier retries", len(srv.received()))
			}
			noLeak(t, err, srv.url())
		})
	}
}

func testRetryAfter(t *testing.T, h Harness) {
	for _, c := range []struct {
		code int
		ra   string
		want time.Duration
	}{
		{429, "7", 7 * time.Second},
		{503, "120", 2 * time.Minute},
	} {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			srv := newServer(t, answer(c.code, "slow down", "Retry-After", c.ra))
			s := h.NewSink(t, srv.url())
			err := s.Send(context.Background(), event(t, 1))
			var se *httpx.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Send: %v, want *httpx.StatusError", err)
			}
			if se.RetryAfter != c.want {
				t.Errorf("RetryAfter %v, want %v", se.RetryAfter, c.want)
			}
			retry, wait := httpx.Retryable(err)
			if !retry || wait != c.want {
				t.Errorf("Retryable = %v, %v; want true, %v", retry, wait, c.want)
			}
		})
	}
	t.Run("date", func(t *testing.T) {
		at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
		srv := newServer(t, answer(503, "", "Retry-After", at))
		s := h.NewSink(t, srv.url())
		var se *httpx.StatusError
		if err := s.Send(context.Background(), event(t, 1)); !errors.As(err, &se) {
			t.Fatalf("Send: %v, want *httpx.StatusError", err)
		}
		if se.RetryAfter < 80*time.Second || se.RetryAfter > 91*time.Second {
			t.Errorf("RetryAfter %v from an HTTP date 90s ahead", se.RetryAfter)
		}
	})
}

// hang answers nothing until the client goes away or the test ends.
func hang(t *testing.T) (http.HandlerFunc, chan struct{}) {
	started := make(chan struct{}, 16)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}, started
}

func testHangCancelled(t *testing.T, h Harness) {
	handler, started := hang(t)
	srv := newServer(t, handler)
	s := h.NewSink(t, srv.url())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	begin := time.Now()
	err := s.Send(ctx, event(t, 1))
	if took := time.Since(begin); took > h.Timeout+time.Second {
		t.Errorf("Send took %v after cancellation", took)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send on a cancelled context: %v, want an error wrapping context.Canceled", err)
	}
	noLeak(t, err, srv.url())
}

func testHangTimeout(t *testing.T, h Harness) {
	handler, _ := hang(t)
	srv := newServer(t, handler)
	s := h.NewSink(t, srv.url())
	begin := time.Now()
	err := s.Send(context.Background(), event(t, 1))
	took := time.Since(begin)
	if err == nil {
		t.Fatal("Send to a hanging server returned nil")
	}
	if took > h.Timeout+time.Second {
		t.Errorf("Send took %v, sink timeout is %v", took, h.Timeout)
	}
	if retry, _ := httpx.Retryable(err); !retry {
		t.Errorf("a timeout is not retryable: %v", err)
	}
	noLeak(t, err, srv.url())
}

func testTransport(t *testing.T, h Harness) {
	srv := newServer(t, answer(200, "ok"))
	url := srv.url()
	srv.Close() // nothing listens any more: connection refused
	s := h.NewSink(t, url)
	err := s.Send(context.Background(), event(t, 1))
	if err == nil {
		t.Fatal("Send to a closed server returned nil")
	}
	var te *httpx.TransportError
	if !errors.As(err, &te) {
		t.Errorf("transport failure %v (%T), want *httpx.TransportError", err, err)
	}
	if retry, _ := httpx.Retryable(err); !retry {
		t.Errorf("a transport failure is not retryable: %v", err)
	}
	noLeak(t, err, url)
}

// testEcho: a server that quotes the request line back must not make the
// URL appear in the error, because the notifier logs and dead-letters it.
func testEcho(t *testing.T, h Harness) {
	var srv *server
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		fmt.Fprintf(w, "no route for POST %s (%s)", r.URL.Path, srv.url())
	})
	s := h.NewSink(t, srv.url())
	err := s.Send(context.Background(), event(t, 1))
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("Send: %v, want a 404 *httpx.StatusError", err)
	}
	noLeak(t, err, srv.url())
}
