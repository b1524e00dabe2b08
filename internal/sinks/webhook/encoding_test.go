package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sinks/sinktest"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// decodeHeader is a receiver's decoding of a Ce-* header value per the
// CloudEvents HTTP protocol binding 1.0.2, section 3.1.3.2: unescape a
// double-quoted string (older senders), then one round of percent-decoding
// that accepts either hex case and rejects a malformed escape or a result
// that is not UTF-8. For a value that is not quoted this is exactly
// JavaScript's decodeURIComponent, which is what a receiver built on the
// CloudEvents JS SDK must apply itself: the SDK (v10) hands Ce-* values
// over as they arrived, without decoding them.
func decodeHeader(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			if v[i] == '\\' && i+1 < len(v)-1 {
				i++
			}
			b.WriteByte(v[i])
		}
		v = b.String()
	}
	var b []byte
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b = append(b, v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", fmt.Errorf("decode %q: escape cut short at %d", v, i)
		}
		c, err := strconv.ParseUint(v[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("decode %q: bad escape at %d: %w", v, i, err)
		}
		b = append(b, byte(c))
		i += 2
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("decode %q: not UTF-8", v)
	}
	return string(b), nil
}

func TestDecodeHeader(t *testing.T) {
	cases := []struct {
		name, in, want string
		bad            bool
	}{
		{"spec example", "Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀", false},
		{"lower-case hex", "j%c3%bcrgen", "jürgen", false},
		{"unnecessarily encoded", "%41b", "Ab", false},
		{"quoted, from an older sender", `"say \"hi\" 100%25"`, `say "hi" 100%`, false},
		{"overlong space", "%C0%A0", "", true},
		{"cut escape", "100%2", "", true},
		{"not hex", "%zz", "", true},
		{"half hex", "%4g", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeHeader(c.in)
			if c.bad {
				if err == nil {
					t.Errorf("decodeHeader(%q) = %q, want an error", c.in, got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("decodeHeader(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}

// TestCEHeadersPercentEncoded checks the exact Ce-* values sent for tricky
// subjects, ids and extension values, and that a receiver decoding them
// per the binding gets the event's values back.
func TestCEHeadersPercentEncoded(t *testing.T) {
	cases := []struct {
		name  string
		value string // set as the subject, the id and an extension
		want  string // on the wire
		back  string // what a receiver decodes; value when empty
	}{
		{"plain", "c3728f5b-7a3e-4f1c", "c3728f5b-7a3e-4f1c", ""},
		{"space and percent", "jürgen 100%", "j%C3%BCrgen%20100%25", ""},
		{"spec example", "Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80", ""},
		{"double quotes", `say "hi"`, "say%20%22hi%22", ""},
		{"looks encoded", "%41", "%2541", ""},
		{"printable ascii kept", "a~!#$&'()*+,/:;<=>?@[\\]^_`{|}", "a~!#$&'()*+,/:;<=>?@[\\]^_`{|}", ""},
		{"cr lf", "x\r\nX-Injected: 1", "x%0D%0AX-Injected:%201", ""},
		{"tab nul del", "a\tb\x00c\x7f", "a%09b%00c%7F", ""},
		{"c1 control", "a\u0085b", "a%C2%85b", ""},
		{"invalid utf-8", "a\xffb", "a%EF%BF%BDb", "a\uFFFDb"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := sinktest.NewEvent(t)
			e.SetSubject(c.value)
			e.SetID(c.value)
			e.SetExtension("rollcallnote", c.value)
			r, _ := send(t, webhook.Config{}, e)
			back := c.back
			if back == "" {
				back = c.value
			}
			for _, h := range []string{"Ce-Subject", "Ce-Id", "Ce-Rollcallnote"} {
				got := r.Header.Values(h)
				if len(got) != 1 || got[0] != c.want {
					t.Errorf("%s: %q, want %q", h, got, c.want)
					continue
				}
				if dec, err := decodeHeader(got[0]); err != nil || dec != back {
					t.Errorf("%s decodes to %q, %v; want %q", h, dec, err, back)
				}
			}
			// The attributes rollcall itself makes need no encoding, so a
			// receiver that does not decode (the JS and Go SDKs) still gets
			// them exactly.
			for h, want := range map[string]string{
				"Ce-Specversion": "1.0", "Ce-Type": e.Type(), "Ce-Source": e.Source(),
				"Ce-Time": e.Time().Format(time.RFC3339Nano), "Ce-Sourcekind": "veeam",
				"Content-Type": "application/json",
			} {
				if got := r.Header.Get(h); got != want {
					t.Errorf("%s: %q, want %q", h, got, want)
				}
			}
		})
	}
}

// TestUnsendableHeaderIsPermanent: a header net/http refuses used to come
// back as a transport error, which the notifier retried for a day; now
// nothing is sent and the error is permanent.
func TestUnsendableHeaderIsPermanent(t *testing.T) {
	cases := []struct {
		name    string
		cfg     webhook.Config
		mutate  func(e *events.Event)
		header  string
		offset  int
		refused byte
	}{
		{"event id with cr lf, signed (webhook-id is sent as it is)", webhook.Config{Secrets: []string{secretA}},
			func(e *events.Event) { e.SetID("evt\r\nX-Injected: 1") }, "Webhook-Id", 3, '\r'},
		{"event id with nul, structured and signed", webhook.Config{Mode: webhook.ModeStructured, Secrets: []string{secretA}},
			func(e *events.Event) { e.SetID("evt\x00") }, "Webhook-Id", 3, 0},
		{"datacontenttype with lf (content-type is not percent-encoded)", webhook.Config{},
			func(e *events.Event) { e.SetDataContentType("application/json\nX: y") }, "Content-Type", 16, '\n'},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := newServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(http.StatusNoContent)
			})
			c.cfg.URL = srv + "/hook"
			s, err := webhook.New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			e := sinktest.NewEvent(t)
			c.mutate(&e)
			err = s.Send(context.Background(), e)
			if retry, after := httpx.Retryable(err); err == nil || retry || after != 0 {
				t.Fatalf("Send: %v; Retryable = %v, %v; want a permanent error", err, retry, after)
			}
			if !errors.Is(err, webhook.ErrUnsendable) {
				t.Errorf("Send: %v, want it to wrap ErrUnsendable", err)
			}
			var he *webhook.HeaderError
			if !errors.As(err, &he) || he.Name != c.header || he.Offset != c.offset || he.Byte != c.refused {
				t.Errorf("Send: %#v, want a HeaderError for %s at %d (%#02x)", he, c.header, c.offset, c.refused)
			}
			if strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Errorf("error %q carries the refused bytes", err)
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("server got %d requests", n)
			}
		})
	}
}

// notifierSendTimeout stands for the notifier's own per-Send timeout
// (Config.SendTimeout, 8s by default), scaled down like the rest of the
// test. The notifier bounds each Send by max(it, sink.SendTimeout()).
const notifierSendTimeout = 200 * time.Millisecond

func TestSendTimeoutReported(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"default", 0, webhook.DefaultTimeout},
		{"12s, above the notifier's 8s default", 12 * time.Second, 12 * time.Second},
		{"1s", time.Second, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := webhook.New(webhook.Config{URL: "https://hooks.example.com/in", Timeout: c.timeout})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.SendTimeout(); got != c.want {
				t.Errorf("SendTimeout() = %v, want %v", got, c.want)
			}
		})
	}
}

// TestSlowReceiverWithinTimeout sends as the notifier does, under
// max(notifierSendTimeout, SendTimeout()), to a receiver slower than the
// notifier's timeout: it is delivered while within the webhook's timeout.
func TestSlowReceiverWithinTimeout(t *testing.T) {
	const timeout = 3 * notifierSendTimeout
	cases := []struct {
		name      string
		delay     time.Duration
		delivered bool
	}{
		{"slower than the notifier's timeout", 2 * notifierSendTimeout, true},
		{"slower than the webhook's timeout", timeout + notifierSendTimeout, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(c.delay):
				case <-r.Context().Done():
				}
				w.WriteHeader(http.StatusNoContent)
			})
			s, err := webhook.New(webhook.Config{URL: srv + "/hook", Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), max(notifierSendTimeout, s.SendTimeout()))
			defer cancel()
			err = s.Send(ctx, sinktest.NewEvent(t))
			if c.delivered && err != nil {
				t.Fatalf("Send: %v, want delivered", err)
			}
			if !c.delivered {
				if retry, _ := httpx.Retryable(err); err == nil || !retry {
					t.Fatalf("Send: %v, want a retryable timeout", err)
				}
			}
		})
	}
}

// newServerFunc starts a receiver answering with h and returns its URL.
func newServerFunc(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
