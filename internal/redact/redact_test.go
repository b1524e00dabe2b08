package redact_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/redact"
)

const pw = `p@ss+w/rd"\<&>=`

func TestString(t *testing.T) {
	r := redact.New(pw, "", "tok%2Fen-0123456789==")
	cases := []struct {
		name, in, want string
	}{
		{"raw", "bad " + pw + "!", "bad [redacted]!"},
		{"query escaped", "password=" + url.QueryEscape(pw), "password=[redacted]"},
		{"path escaped", "/login/" + url.PathEscape(pw), "/login/[redacted]"},
		{"lower-case hex", "p=" + strings.ToLower(url.QueryEscape(pw)), "p=[redacted]"},
		{"userinfo", "https://u:" + strings.TrimPrefix(url.UserPassword("", pw).String(), ":") + "@h", "https://u:[redacted]@h"},
		{"json with html escaping", `{"p":"p@ss+w/rd\"\\\u003c\u0026\u003e="}`, `{"p":"[redacted]"}`},
		{"json without html escaping", `{"p":"p@ss+w/rd\"\\<&>="}`, `{"p":"[redacted]"}`},
		{"json with escaped slashes", `{"p":"p@ss+w\/rd\"\\<&>="}`, `{"p":"[redacted]"}`},
		{"base64", "Basic " + base64.StdEncoding.EncodeToString([]byte(pw)), "Basic [redacted]"},
		{"base64 url alphabet unpadded", base64.RawURLEncoding.EncodeToString([]byte(pw)), "[redacted]"},
		{"given escaped, echoed decoded", "token tok/en-0123456789==", "token [redacted]"},
		{"padding escaped differently", "token tok%2Fen-0123456789%3d%3d", "token [redacted]%3d%3d"},
		{"nothing secret", "all fine", "all fine"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.String(c.in); got != c.want {
				t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
	if got := redact.New("s3cret").WithMarker("REDACTED").String("a s3cret"); got != "a REDACTED" {
		t.Errorf("WithMarker: %q", got)
	}
	var none *redact.Redactor
	if got := none.String("a s3cret"); got != "a s3cret" {
		t.Errorf("nil redactor: %q", got)
	}
}

func TestErr(t *testing.T) {
	r := redact.New("s3cret")
	base := fmt.Errorf("open s3cret: %w", fs.ErrNotExist)
	err := r.Err(base)
	if err.Error() != "open [redacted]: file does not exist" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Err = %q, errors.Is(ErrNotExist) = %v", err, errors.Is(err, fs.ErrNotExist))
	}
	if plain := errors.New("plain"); r.Err(plain) != plain {
		t.Error("an error without a secret should come back as it is")
	}
	if r.Err(nil) != nil {
		t.Error("Err(nil) != nil")
	}
}

// noControl reports the first control or formatting character in s.
func noControl(t *testing.T, s string) {
	t.Helper()
	for i, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			t.Errorf("control character %U at byte %d of %q", r, i, s)
			return
		}
	}
	if !utf8.ValidString(s) {
		t.Errorf("invalid utf-8 in %q", s)
	}
}

func TestExcerpt(t *testing.T) {
	secret := "https://hooks.slack.com/services/T0/B0/XXXXXXXXXXXXXXXXXXXXXXXX"
	r := redact.New(secret)
	cases := []struct {
		name, in string
		limit    int
		want     string
	}{
		{"short", "invalid_payload", 300, "invalid_payload"},
		{"one line", "  error:\n\tbad\r\n thing ", 300, "error: bad thing"},
		{"terminal escapes", "\x1b[31mred\x1b[0m \x1b]x \x1b", 300, "red x"},
		{"c1 csi and controls", "a\u009b1;2mb\x00\x07\x7fc\u202ed", 300, "abcd"},
		{"invalid utf-8", "bad \xff byte", 300, "bad \uFFFD byte"},
		{"cut", strings.Repeat("a", 20), 10, "aaaaaaa" + redact.Ellipsis},
		{"cut at a rune", "aaaaaaé" + "bbbb", 10, "aaaaaa" + redact.Ellipsis},
		{"no cut marker", "aaaa " + secret + " tail", 12, "aaaa" + redact.Ellipsis},
		{"redacted then cut", strings.Repeat("a", 150) + secret + strings.Repeat("b", 100), 200,
			strings.Repeat("a", 150) + "[redacted]" + strings.Repeat("b", 37) + redact.Ellipsis},
		// Redaction shortens the text, so that the start of a secret the
		// cleaning budget cut off would fall within the limit.
		{"secret cut by the budget", "a" + strings.Repeat(" "+secret, 3) + strings.Repeat("b", 40) + " " + secret, 200,
			"a [redacted] [redacted] [redacted]" + strings.Repeat("b", 40) + redact.Ellipsis},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := r.Excerpt(c.in, c.limit)
			if got != c.want {
				t.Errorf("Excerpt = %q, want %q", got, c.want)
			}
			if len(got) > c.limit {
				t.Errorf("%d bytes, limit %d", len(got), c.limit)
			}
			noControl(t, got)
		})
	}
}

func TestExcerptPrefix(t *testing.T) {
	secret := "https://hooks.slack.com/services/T0/B0/XXXXXXXXXXXXXXXXXXXXXXXX"
	r := redact.New(secret)
	cases := []struct {
		name, in, want string
	}{
		{"split rune dropped", "abc\xc3", "abc" + redact.Ellipsis},
		{"start of a secret dropped", "see " + secret[:30], "see" + redact.Ellipsis},
		{"whole secret redacted", "see " + secret, "see [redacted]" + redact.Ellipsis},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.ExcerptPrefix(c.in, 200); got != c.want {
				t.Errorf("ExcerptPrefix = %q, want %q", got, c.want)
			}
		})
	}
}

// TestExcerptHuge is the 5 MB API message full of terminal escapes and line
// breaks: the excerpt is short and clean, and a secret anywhere in the kept
// part is redacted.
func TestExcerptHuge(t *testing.T) {
	const secret = "pw-S3CRET-hunter2"
	huge := strings.Repeat("\x1b[31mdenied "+secret+"\r\n", 5<<20/30)
	got := redact.New(secret).Excerpt(huge, 300)
	if len(got) > 300 || strings.Contains(got, "S3CRET") || !strings.HasPrefix(got, "denied [redacted] denied") {
		t.Errorf("excerpt of %d bytes: %q", len(got), got)
	}
	noControl(t, got)
	onlyEscapes := strings.Repeat("\x1b[31m\r\n", 5<<20/7)
	if got := redact.Excerpt(onlyEscapes, 300); got != "" {
		t.Errorf("excerpt of escapes only: %q", got)
	}
}
