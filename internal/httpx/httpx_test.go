package httpx_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		status int
		want   httpx.Outcome
	}{
		{200, httpx.OK}, {204, httpx.OK}, {299, httpx.OK},
		{408, httpx.Retry}, {429, httpx.Retry}, {500, httpx.Retry}, {503, httpx.Retry}, {520, httpx.Retry},
		{301, httpx.Permanent}, {400, httpx.Permanent}, {401, httpx.Permanent}, {404, httpx.Permanent}, {410, httpx.Permanent},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			if got := httpx.Classify(tt.status); got != tt.want {
				t.Fatalf("Classify(%d) = %d, want %d", tt.status, got, tt.want)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		retry bool
		after time.Duration
	}{
		{"nil", nil, false, 0},
		{"503 with retry-after", fmt.Errorf("post: %w", &httpx.StatusError{Code: 503, RetryAfter: 7 * time.Second}), true, 7 * time.Second},
		{"404", &httpx.StatusError{Code: 404}, false, 0},
		{"transport", httpx.StripURL("post", &url.Error{Op: "Post", URL: "https://hooks.example/SECRET", Err: errors.New("connection refused")}), true, 0},
		{"unexpected eof", io.ErrUnexpectedEOF, true, 0},
		{"cancelled", context.Canceled, false, 0},
		{"plain", errors.New("bad config"), false, 0},
		{"untrusted certificate", httpx.StripURL("get", &url.Error{Op: "Get", URL: "https://spc:1280", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry, after := httpx.Retryable(tt.err)
			if retry != tt.retry || after != tt.after {
				t.Fatalf("Retryable = %v, %v; want %v, %v", retry, after, tt.retry, tt.after)
			}
		})
	}
}

func TestStripURLDropsTheURL(t *testing.T) {
	err := httpx.StripURL("post to slack", &url.Error{Op: "Post", URL: "https://hooks.slack.com/services/T0/B0/SECRETxyz", Err: errors.New("timeout")})
	if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("error %q", err)
	}
}

func TestSeconds(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   float64
		want time.Duration
	}{
		{"zero", 0, 0},
		{"negative", -3, 0},
		{"NaN", math.NaN(), 0},
		{"fraction", 1.5, 1500 * time.Millisecond},
		{"a year", 365 * 24 * 3600, 365 * 24 * time.Hour},
		{"overflow", 1e10, httpx.MaxSeconds},
		{"infinity", math.Inf(1), httpx.MaxSeconds},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := httpx.Seconds(tt.in); got != tt.want {
				t.Fatalf("Seconds(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
		ok    bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"absent", "", 0, false},
		{"negative", "-5", 0, false},
		{"garbage", "soon", 0, false},
		// Found by fuzzing (issue 14): beyond 9.2e9 s the conversion
		// overflowed to a negative wait, which retried at once.
		{"past a Duration", "10000000000", httpx.MaxSeconds, true},
		{"date far ahead", "Fri, 31 Dec 9999 23:59:59 GMT", httpx.MaxSeconds, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			got, ok := httpx.RetryAfter(h, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := httpx.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt := 1; attempt <= 10; attempt++ {
		for range 50 {
			d := b.Delay(attempt, 0)
			ceiling := 100 * time.Millisecond << (attempt - 1)
			if ceiling > time.Second {
				ceiling = time.Second
			}
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	// Never earlier than the server asked.
	if d := b.Delay(1, 5*time.Second); d != 5*time.Second {
		t.Fatalf("delay with floor = %v, want 5s", d)
	}
}

func TestReadBody(t *testing.T) {
	if b, err := httpx.ReadBody(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q %v", b, err)
	}
	if _, err := httpx.ReadBody(strings.NewReader("123456"), 5); !errors.Is(err, httpx.ErrBodyTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestSleepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := httpx.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("Sleep on a cancelled context: %v after %v", err, time.Since(start))
	}
}
