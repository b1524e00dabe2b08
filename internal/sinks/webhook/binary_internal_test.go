package webhook

import (
	"context"
	"io"
	"maps"
	"net/http"
	"slices"
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
