package post

import (
	"strings"
	"testing"
	"unicode/utf8"
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
