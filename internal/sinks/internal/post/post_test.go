package post

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/httpx"
)

func TestMessage(t *testing.T) {
	cases := []struct {
		name, in string
		redact   []string
		want     string
	}{
		{"plain", "invalid_payload", nil, "invalid_payload"},
		{"one line", "  error:\n\tbad\r\n thing ", nil, "error: bad thing"},
		{"redacted", "no route /services/T0/B0/SECRET at https://h/services/T0/B0/SECRET", []string{"https://h/services/T0/B0/SECRET", "/services/T0/B0/SECRET"}, "no route [redacted] at [redacted]"},
		{"short redact ignored", "a / b", []string{"/"}, "a / b"},
		{"invalid utf-8", "bad \xff byte", nil, "bad \uFFFD byte"},
	}
	for _, c := range cases {
		if got := Message([]byte(c.in), c.redact...); got != c.want {
			t.Errorf("%s: Message = %q, want %q", c.name, got, c.want)
		}
	}
	// A rune cut by the byte limit is dropped, not turned into U+FFFD, and
	// the cut is marked.
	long := strings.Repeat("a", MessageLimit-4) + "é" + strings.Repeat("b", 100)
	got := Message([]byte(long))
	if want := strings.Repeat("a", MessageLimit-4) + "…"; got != want {
		t.Errorf("truncated message %q (%d bytes), want %q", got, len(got), want)
	}
}

func TestCheckHeaders(t *testing.T) {
	cases := []struct {
		name string
		h    http.Header
		want *HeaderError // nil: sendable
	}{
		{"plain", http.Header{"Ce-Id": {"abc"}}, nil},
		{"tab and obs-text are sent", http.Header{"Ce-Subject": {"a\tb", "j\xc3\xbcrgen"}}, nil},
		{"cr", http.Header{"Webhook-Id": {"a\rb"}}, &HeaderError{Name: "Webhook-Id", Offset: 1, Byte: '\r'}},
		{"del in a second value", http.Header{"X": {"ok", "ab\x7f"}}, &HeaderError{Name: "X", Offset: 2, Byte: 0x7f}},
		{"name with a space", http.Header{"Bad Name": {"v"}}, &HeaderError{Name: "Bad Name", Offset: -1}},
		{"empty name", http.Header{"": {"v"}}, &HeaderError{Name: "", Offset: -1}},
		{"first by name, whatever the map order", http.Header{"B": {"\n"}, "A": {"x\x00"}, "C": {"\n"}}, &HeaderError{Name: "A", Offset: 1, Byte: 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckHeaders(c.h)
			if c.want == nil {
				if err != nil {
					t.Fatalf("CheckHeaders: %v, want nil", err)
				}
				return
			}
			var he *HeaderError
			if !errors.As(err, &he) || *he != *c.want || !errors.Is(err, ErrUnsendable) {
				t.Fatalf("CheckHeaders: %#v, want %#v wrapping ErrUnsendable", err, c.want)
			}
			if retry, _ := httpx.Retryable(fmt.Errorf("webhook x: post: %w", err)); retry {
				t.Errorf("Retryable(%v) = true, want permanent", err)
			}
		})
	}
}

// slackPath is the secret part of a Slack webhook URL.
const slackPath = "/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"

// answering starts a server that answers every request with status and
// body, and returns a sink's endpoint URL on it (with slackPath) and its
// redact list.
func answering(t *testing.T, status int, body string) (string, []string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	endpoint := srv.URL + slackPath
	redact, err := Endpoint(endpoint)
	if err != nil {
		t.Fatalf("Endpoint: %v", err)
	}
	return endpoint, redact
}

func post(t *testing.T, endpoint string, redact []string) *httpx.StatusError {
	t.Helper()
	req, err := NewRequest(context.Background(), "test", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	err = Do(NewClient(), req, "test: post", time.Now, redact...)
	var se *httpx.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Do: %v, want a StatusError", err)
	}
	return se
}

// leaked returns the longest piece of secret longer than 8 bytes that
// appears in s.
func leaked(s, secret string) string {
	for n := len(secret); n > 8; n-- {
		for i := 0; i+n <= len(secret); i++ {
			if strings.Contains(s, secret[i:i+n]) {
				return secret[i : i+n]
			}
		}
	}
	return ""
}

func clean(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("invalid utf-8 in %q", s)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		t.Errorf("control character at byte %d of %q", i, s)
	}
}

// TestDoRedactsBeforeCut: a server echoing the endpoint URL (or its path) in
// any spelling, where the cut to MessageLimit would fall inside it, leaves
// no piece of the secret path longer than 8 bytes in the message.
func TestDoRedactsBeforeCut(t *testing.T) {
	pad := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name string
		body func(endpoint string) string
	}{
		{"url across the cut", func(e string) string { return pad(150) + e + pad(300-150-len(e)) }},
		{"path across the cut", func(string) string { return pad(180) + slackPath + pad(50) }},
		{"url query-escaped", func(e string) string { return "no hook " + url.QueryEscape(e) }},
		{"path json-escaped", func(string) string { return pad(150) + strings.ReplaceAll(slackPath, "/", `\/`) }},
		{"url after white space", func(e string) string { return strings.Repeat(" \r\n\t", 500) + pad(150) + e }},
		{"url beyond what is read", func(e string) string { return pad(8<<10-20) + e }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, body)
			}))
			defer srv.Close()
			endpoint := srv.URL + slackPath
			body = c.body(endpoint)
			redact, err := Endpoint(endpoint)
			if err != nil {
				t.Fatal(err)
			}
			se := post(t, endpoint, redact)
			if l := leaked(se.Message, slackPath); l != "" {
				t.Errorf("message %q keeps %q of the secret path", se.Message, l)
			}
			if len(se.Message) > MessageLimit {
				t.Errorf("message of %d bytes, limit %d", len(se.Message), MessageLimit)
			}
			clean(t, se.Message)
		})
	}
}

// TestDoHugeBody: a 5 MB body of terminal escapes and line breaks becomes a
// short, clean message.
func TestDoHugeBody(t *testing.T) {
	endpoint, redact := answering(t, http.StatusForbidden, strings.Repeat("\x1b[31mforbidden\r\n", 5<<20/17))
	se := post(t, endpoint, redact)
	if len(se.Message) > MessageLimit || !strings.HasPrefix(se.Message, "forbidden forbidden") {
		t.Errorf("message of %d bytes: %q", len(se.Message), se.Message)
	}
	clean(t, se.Message)
}
