package post

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
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
	// A rune cut by the byte limit is dropped, not turned into U+FFFD.
	long := strings.Repeat("a", MessageLimit-1) + "é" + strings.Repeat("b", 100)
	got := Message([]byte(long))
	if !utf8.ValidString(got) || strings.ContainsRune(got, utf8.RuneError) || len(got) != MessageLimit-1 {
		t.Errorf("truncated message %q (%d bytes)", got, len(got))
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
