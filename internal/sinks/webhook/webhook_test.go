package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/rollcall/rollcall/internal/sinks/sinktest"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// Secrets in Standard Webhooks form; the first is the spec's test vector key.
const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA=="
)

var fixedNow = time.Unix(1_800_000_000, 0)

// The notifier depends on every sink satisfying this interface.
var _ sinktest.Sink = (*webhook.Sink)(nil)

func TestConformance(t *testing.T) {
	for _, mode := range []string{webhook.ModeBinary, webhook.ModeStructured} {
		t.Run(mode, func(t *testing.T) {
			sinktest.RunConformance(t, sinktest.Harness{
				NewSink: func(t *testing.T, url string) sinktest.Sink {
					s, err := webhook.New(webhook.Config{URL: url, Mode: mode, Secrets: []string{secretA}, Timeout: 5 * time.Second})
					if err != nil {
						t.Fatal(err)
					}
					return s
				},
				HTTP:        true,
				Timeout:     5 * time.Second,
				CloudEvents: true,
				CheckRequest: func(t *testing.T, r *http.Request, body []byte, sent events.Event) {
					if err := webhook.Verify([]string{secretA}, r.Header, body, time.Now(), time.Minute); err != nil {
						t.Errorf("Verify: %v", err)
					}
				},
			})
		})
	}
}

// capture records the one request a test sends.
type capture struct {
	mu   sync.Mutex
	req  *http.Request
	body []byte
}

func newCapture(t *testing.T) (*capture, string) {
	c := &capture{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.req, c.body = r.Clone(context.Background()), b
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL + "/hook"
}

func (c *capture) get(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.req == nil {
		t.Fatal("no request received")
	}
	return c.req, c.body
}

func send(t *testing.T, cfg webhook.Config, e events.Event) (*http.Request, []byte) {
	t.Helper()
	c, url := newCapture(t)
	cfg.URL = url
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return c.get(t)
}

func decode(t *testing.T, r *http.Request, body []byte) events.Event {
	t.Helper()
	r.Body = io.NopCloser(bytes.NewReader(body))
	e, err := binding.ToEvent(context.Background(), cehttp.NewMessageFromHttpRequest(r))
	if err != nil {
		t.Fatalf("SDK decode: %v", err)
	}
	return *e
}

func TestBinaryMode(t *testing.T) {
	e := sinktest.NewEvent(t)
	r, body := send(t, webhook.Config{}, e)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	for h, want := range map[string]string{
		"Ce-Id": e.ID(), "Ce-Specversion": "1.0", "Ce-Type": events.TypeRoleChanged,
		"Ce-Source": "urn:rollcall:source:veeam", "Ce-Subject": e.Subject(), "Ce-Sourcekind": "veeam",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if !bytes.Equal(body, e.Data()) {
		t.Errorf("body %s, want the data %s", body, e.Data())
	}
	if r.Header.Get(webhook.HeaderSignature) != "" {
		t.Error("signed without a secret")
	}
	got := decode(t, r, body)
	if got.ID() != e.ID() || !bytes.Equal(got.Data(), e.Data()) || events.Validate(got) != nil {
		t.Errorf("decoded %v, want %v", got, e)
	}
}

func TestStructuredMode(t *testing.T) {
	e := sinktest.NewEvent(t)
	r, body := send(t, webhook.Config{Mode: webhook.ModeStructured}, e)
	if ct := r.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("Content-Type %q, want application/cloudevents+json", ct)
	}
	if r.Header.Get("Ce-Id") != "" {
		t.Error("structured mode sent Ce-* headers")
	}
	got := decode(t, r, body)
	if got.ID() != e.ID() || !bytes.Equal(got.Data(), e.Data()) {
		t.Errorf("decoded %v, want %v", got, e)
	}
	if err := events.Validate(got); err != nil {
		t.Error(err)
	}
}

// hmacSig is an independent implementation of the Standard Webhooks
// signature, so that Sign is not only checked against itself.
func hmacSig(t *testing.T, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	io.WriteString(m, id+"."+ts+".")
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestSignatureIndependentHMAC(t *testing.T) {
	e := sinktest.NewEvent(t)
	for _, mode := range []string{webhook.ModeBinary, webhook.ModeStructured} {
		t.Run(mode, func(t *testing.T) {
			r, body := send(t, webhook.Config{Mode: mode, Secrets: []string{secretA}, Now: func() time.Time { return fixedNow }}, e)
			if got := r.Header.Get("webhook-id"); got != e.ID() {
				t.Errorf("webhook-id %q, want the event id %q", got, e.ID())
			}
			if got := r.Header.Get("webhook-timestamp"); got != "1800000000" {
				t.Errorf("webhook-timestamp %q", got)
			}
			want := hmacSig(t, secretA, e.ID(), "1800000000", body)
			if got := r.Header.Get("webhook-signature"); got != want {
				t.Errorf("webhook-signature %q, want %q", got, want)
			}
		})
	}
}

func TestSignTestVector(t *testing.T) {
	// Published Standard Webhooks vector: receivers' libraries must accept
	// what rollcall sends.
	got, err := webhook.Sign(secretA, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestRotation(t *testing.T) {
	e := sinktest.NewEvent(t)
	r, body := send(t, webhook.Config{Secrets: []string{secretA, secretB}, Now: func() time.Time { return fixedNow }}, e)
	sigs := strings.Split(r.Header.Get("webhook-signature"), " ")
	want := []string{hmacSig(t, secretA, e.ID(), "1800000000", body), hmacSig(t, secretB, e.ID(), "1800000000", body)}
	if len(sigs) != 2 || sigs[0] != want[0] || sigs[1] != want[1] {
		t.Fatalf("webhook-signature %q, want %q", sigs, want)
	}
	// A receiver that knows only the old or only the new secret accepts it.
	for _, s := range []string{secretA, secretB} {
		if err := webhook.Verify([]string{s}, r.Header, body, fixedNow, 0); err != nil {
			t.Errorf("Verify with one secret: %v", err)
		}
	}
	if err := webhook.Verify([]string{"whsec_" + base64.StdEncoding.EncodeToString([]byte("some-other-secret-entirely"))}, r.Header, body, fixedNow, 0); !errors.Is(err, webhook.ErrNoMatch) {
		t.Errorf("Verify with an unknown secret: %v, want ErrNoMatch", err)
	}
}

func signedHeader(t *testing.T, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	sig, err := webhook.Sign(secretA, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", "v1,bm9wZQ== "+sig) // a foreign signature first
	return h
}

func TestVerify(t *testing.T) {
	body := []byte(`{"user":{"id":"1"}}`)
	h := signedHeader(t, "evt-1", fixedNow, body)
	if err := webhook.Verify([]string{secretA}, h, body, fixedNow.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	cases := []struct {
		name string
		h    func() http.Header
		body []byte
		now  time.Time
		want error
	}{
		{"tampered body", func() http.Header { return h }, []byte(`{"user":{"id":"2"}}`), fixedNow, webhook.ErrNoMatch},
		{"old timestamp", func() http.Header { return h }, body, fixedNow.Add(6 * time.Minute), webhook.ErrTimestamp},
		{"future timestamp", func() http.Header { return h }, body, fixedNow.Add(-6 * time.Minute), webhook.ErrTimestamp},
		{"other id", func() http.Header { c := h.Clone(); c.Set("webhook-id", "evt-2"); return c }, body, fixedNow, webhook.ErrNoMatch},
		{"moved timestamp", func() http.Header {
			c := h.Clone()
			c.Set("webhook-timestamp", strconv.FormatInt(fixedNow.Unix()+1, 10))
			return c
		}, body, fixedNow, webhook.ErrNoMatch},
		{"bad timestamp", func() http.Header { c := h.Clone(); c.Set("webhook-timestamp", "soon"); return c }, body, fixedNow, webhook.ErrTimestamp},
		{"no signature", func() http.Header { c := h.Clone(); c.Del("webhook-signature"); return c }, body, fixedNow, webhook.ErrMissingHeaders},
		{"v2 scheme", func() http.Header {
			c := h.Clone()
			c.Set("webhook-signature", strings.Replace(strings.Fields(h.Get("webhook-signature"))[1], "v1,", "v2,", 1))
			return c
		}, body, fixedNow, webhook.ErrNoMatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := webhook.Verify([]string{secretA}, c.h(), c.body, c.now, 5*time.Minute); !errors.Is(err, c.want) {
				t.Errorf("Verify: %v, want %v", err, c.want)
			}
		})
	}
}

func TestFreshTimestampPerAttempt(t *testing.T) {
	e := sinktest.NewEvent(t)
	c, url := newCapture(t)
	now := fixedNow
	s, err := webhook.New(webhook.Config{URL: url, Secrets: []string{secretA}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var ts []string
	for range 2 {
		if err := s.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		r, body := c.get(t)
		if err := webhook.Verify([]string{secretA}, r.Header, body, now, 0); err != nil {
			t.Error(err)
		}
		ts = append(ts, r.Header.Get("webhook-timestamp")+" "+r.Header.Get("webhook-id"))
		now = now.Add(time.Minute)
	}
	if ts[0] == ts[1] || strings.Fields(ts[0])[1] != strings.Fields(ts[1])[1] {
		t.Errorf("two attempts: %q; want the same webhook-id and a new timestamp", ts)
	}
}

func TestNewValidates(t *testing.T) {
	const secretURL = "https://hooks.example.com/in/TOKEN123secret"
	cases := []struct {
		name string
		cfg  webhook.Config
	}{
		{"no url", webhook.Config{}},
		{"bad url", webhook.Config{URL: "https://hooks.example.com/in/TOKEN123secret\x7f"}},
		{"scheme", webhook.Config{URL: "ftp://hooks.example.com/in/TOKEN123secret"}},
		{"no host", webhook.Config{URL: "https:///in/TOKEN123secret"}},
		{"mode", webhook.Config{URL: secretURL, Mode: "batch"}},
		{"secret without prefix", webhook.Config{URL: secretURL, Secrets: []string{"TOKEN123secret"}}},
		{"secret not base64", webhook.Config{URL: secretURL, Secrets: []string{"whsec_TOKEN123secret!!"}}},
		{"empty secret", webhook.Config{URL: secretURL, Secrets: []string{"whsec_"}}},
		{"negative timeout", webhook.Config{URL: secretURL, Timeout: -time.Second}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := webhook.New(c.cfg)
			if err == nil {
				t.Fatal("New accepted it")
			}
			if strings.Contains(err.Error(), "TOKEN123") {
				t.Errorf("error %q leaks the URL or secret", err)
			}
		})
	}
	s, err := webhook.New(webhook.Config{URL: secretURL, Secrets: []string{secretA, "whsec_c2VjcmV0"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "webhook" {
		t.Errorf("default name %q", s.Name())
	}
}
