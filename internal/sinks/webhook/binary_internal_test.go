package webhook

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// A message sent as it is (SendBinary) must make exactly the request its
// decoded event makes (Send): the same headers, signature included, and
// the same body.
func TestSendBinaryRequestIsSendRequest(t *testing.T) {
	now := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	signed, err := New(Config{Name: "w", URL: "http://x/hook", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := New(Config{Name: "w", URL: "http://x/hook", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var msgs int
	for _, id := range []string{"plain-1", "a b%ü\u00a0x", "ünïcode 用户"} {
		for _, typ := range []string{events.TypeRegistered, events.TypeRetired} {
			u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: id, Status: "Registered", Email: "ü@example.com"}
			e, err := events.New(events.Spec{Type: typ, User: u, Observed: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 7200))})
			if err != nil {
				t.Fatal(err)
			}
			h, body, err := events.ToHeaders(e)
			if err != nil {
				t.Fatal(err)
			}
			b, ok := events.AsBinary(h, body)
			if !ok {
				t.Fatalf("AsBinary refused %q", h)
			}
			msgs++
			// As the notifier has it: decoded from the message.
			d, err := events.FromHeaders(h, body)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Sink{signed, unsigned} {
				want, err := s.request(context.Background(), d)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.requestBinary(context.Background(), b)
				if err != nil {
					t.Fatal(err)
				}
				if !equalHeaders(got.Header, want.Header) {
					t.Fatalf("headers differ:\n got %v\nwant %v", got.Header, want.Header)
				}
				gb, wb := readBody(t, got), readBody(t, want)
				if string(gb) != string(wb) || got.ContentLength != want.ContentLength {
					t.Fatalf("bodies differ: %q (%d), want %q (%d)", gb, got.ContentLength, wb, want.ContentLength)
				}
			}
		}
	}
	if msgs == 0 {
		t.Fatal("nothing compared")
	}
}

func TestSendBinaryOnlyInBinaryMode(t *testing.T) {
	s, err := New(Config{Name: "w", URL: "http://x/hook", Mode: ModeStructured})
	if err != nil {
		t.Fatal(err)
	}
	if s.SendsBinary() {
		t.Fatal("a structured-mode sink says it sends binary")
	}
	if _, err := s.requestBinary(context.Background(), events.Binary{ID: "1"}); err == nil {
		t.Fatal("a structured-mode sink built a binary request")
	}
}

func equalHeaders(a, b http.Header) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func readBody(t *testing.T, r *http.Request) []byte {
	t.Helper()
	if r.Body == nil {
		return nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requestBinary shares the message's header values with the request; an
// append to a request header (a RoundTripper adding a value) must never
// write into the message, whose slice may have room beside its one value.
func TestRequestBinaryNeverWritesIntoTheMessage(t *testing.T) {
	s, err := New(Config{Name: "w", URL: "http://x/hook"})
	if err != nil {
		t.Fatal(err)
	}
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "u1", Status: "Registered"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h { // room beside each value, as a parser may leave
		h[k] = append(make([]string, 0, 4), vs...)
	}
	b, ok := events.AsBinary(h, body)
	if !ok {
		t.Fatal("AsBinary refused the event")
	}
	before := maps.Clone(h)
	for k, vs := range h {
		before[k] = slices.Clone(vs)
	}
	for range 2 {
		req, err := s.requestBinary(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		for k := range req.Header {
			req.Header.Add(k, "appended")
		}
		if req.URL.Path = "/changed"; s.target.NewRequest(context.Background(), 1).URL.Path != "/hook" {
			t.Fatal("a request's URL is shared with the next")
		}
	}
	for k, vs := range h {
		if !slices.Equal(vs[:cap(vs)][:len(vs)], before[k]) || slices.Contains(vs[:cap(vs)], "appended") {
			t.Errorf("header %s of the message changed: %q", k, vs[:cap(vs)])
		}
	}
}

// A delivery goes out in one write: headers and body together. net/http
// sends them in two (an extra system call and TCP segment per delivery)
// when it does not know the body for one in memory.
func TestSendBinaryWritesOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counted := &writeCounter{Listener: ln}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	srv.Listener = counted
	srv.Start()
	defer srv.Close()
	s, err := New(Config{Name: "w", URL: srv.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "u1", Status: "Registered"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := events.AsBinary(h, body)
	if !ok {
		t.Fatal("AsBinary refused the event")
	}
	for range 2 { // the second on the kept-alive connection
		if err := s.SendBinary(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := counted.reads.Load(); got > 2 {
		t.Errorf("two deliveries reached the server in %d reads, want 2 (headers and body written apart)", got)
	}
}

// writeCounter counts the reads a server's connections make that return
// data: one per write of the client, on a loopback connection whose
// writes are small.
type writeCounter struct {
	net.Listener
	reads atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.reads}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.n.Add(1)
	}
	return n, err
}
