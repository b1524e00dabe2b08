package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// hostile is a user name a directory may hold: markup, a script and a
// right-to-left override.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>` + "\u202Egnp.exe"

// console runs a console over a fresh embedded NATS server with the
// streams, with one event of a hostile user on the stream.
func console(t *testing.T, cfg Config) (*Server, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	_, js := natstest.Connect(t, natstest.Start(t))
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-1", UserName: hostile, Email: "evil@example.com", Status: "enabled", Role: "A"}
	baseline(ctx, t, js, "veeam", events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-0", UserName: "=cmd|' /C calc'!A0", Status: "enabled"})
	publish(ctx, t, js, events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: time.Now()})
	cfg.JS = js
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("console did not stop within 10s")
		}
	})
	testutil.CheckFor(t, 10*time.Second, "the event in the index", func() error {
		if _, ok := s.Index().Event(eventID(u)); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	return s, js
}

func eventID(u events.User) string {
	return events.ID(u.Source, u.ID, events.TypeRegistered, 0, u.Fingerprint())
}

// baseline stores a source's first snapshot as the poller does.
func baseline(ctx context.Context, t *testing.T, js jetstream.JetStream, source string, users ...events.User) {
	t.Helper()
	obs, err := js.ObjectStore(ctx, bus.BaselinesBucket)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, source, b); err != nil {
		t.Fatal(err)
	}
}

func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, spec events.Spec) {
	t.Helper()
	e, err := events.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, h http.Handler, target string, mod ...func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Host = "127.0.0.1" // a loopback console without login answers only to a loopback host (DNS rebinding)
	for _, m := range mod {
		m(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestHostileValuesAreText: a user name holding markup, a script and a
// bidirectional override is shown as text on every page that shows it,
// with the override made visible.
func TestHostileValuesAreText(t *testing.T) {
	s, _ := console(t, Config{Access: Access{Loopback: true}})
	h := s.Handler()
	for _, target := range []string{"/search?q=evil", "/user?source=veeam&id=u-1", "/"} {
		w := get(t, h, target)
		body := w.Body.String()
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", target, w.Code, body)
		}
		for _, bad := range []string{"<script>alert", "<img src=x", "\u202E"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the page holds %q unescaped", target, bad)
			}
		}
		if target != "/" && (!strings.Contains(body, "&lt;script&gt;") || !strings.Contains(body, "‹U&#43;202E›gnp.exe")) {
			t.Errorf("%s: the hostile user name is not shown as text", target)
		}
	}
}

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"plain é":                "plain é",
		"a\u202Eb":               "a‹U+202E›b",
		"a\u2066b\u2069":         "a‹U+2066›b‹U+2069›",
		"line\nbreak\x1b[31m":    "line‹U+000A›break‹U+001B›[31m",
		strings.Repeat("x", 400): strings.Repeat("x", 300) + "…",
	} {
		if got := shown(in); got != want {
			t.Errorf("shown(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedriveNeedsCSRFToken: a POST without the page's token, or from
// another site, redrives nothing.
func TestRedriveNeedsCSRFToken(t *testing.T) {
	called := 0
	var refuse error
	s, _ := console(t, Config{Access: Access{Loopback: true}, Redrive: func(context.Context, string, string) (deadletter.RedriveStats, error) {
		called++
		if refuse != nil {
			return deadletter.RedriveStats{}, refuse
		}
		return deadletter.RedriveStats{Matched: 1, Sent: 1}, nil
	}})
	h := s.Handler()
	var body string
	post := func(form url.Values, hdr map[string]string) int {
		r := httptest.NewRequest(http.MethodPost, "/deadletters/redrive", strings.NewReader(form.Encode()))
		r.RemoteAddr = "127.0.0.1:40000"
		r.Host = "127.0.0.1" // a loopback console without login answers only to a loopback host (DNS rebinding)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		body = w.Body.String()
		return w.Code
	}
	good := url.Values{"sink": {"webhook"}, "csrf": {s.csrf.token("local")}}
	if c := post(url.Values{"sink": {"webhook"}}, nil); c != http.StatusForbidden {
		t.Errorf("no token: status %d, want 403", c)
	}
	if c := post(url.Values{"sink": {"webhook"}, "csrf": {"forged"}}, nil); c != http.StatusForbidden {
		t.Errorf("wrong token: status %d, want 403", c)
	}
	if c := post(good, map[string]string{"Sec-Fetch-Site": "cross-site"}); c != http.StatusForbidden {
		t.Errorf("from another site: status %d, want 403", c)
	}
	if called != 0 {
		t.Fatalf("redrive ran %d times for refused POSTs", called)
	}
	if c := post(good, map[string]string{"Sec-Fetch-Site": "same-origin"}); c != http.StatusOK || called != 1 || !strings.Contains(body, "1 of 1 sent") {
		t.Errorf("good POST: status %d, redrives %d; want 200, 1 and the result shown", c, called)
	}
	// A refusal (the sink's endpoint moved) is shown as such.
	refuse = fmt.Errorf("sink webhook: endpoint changed from hooks.example to other.example\nnothing was changed")
	if c := post(good, nil); c != http.StatusConflict || !strings.Contains(body, "endpoint changed from hooks.example") {
		t.Errorf("refused redrive: status %d; want 409 with the refusal in the page", c)
	}
}

// TestAccess: beyond loopback a request needs an htpasswd user or a
// trusted proxy's header; a header from anyone else counts for nothing.
func TestAccess(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(f, []byte("# admins\nalice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := LoadHtpasswd(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := (Access{}).Check(); err == nil {
		t.Error("no loopback and no login: accepted")
	}
	proxies, _ := ParseProxies("10.0.0.5, 192.168.0.0/24")
	s, _ := console(t, Config{Access: Access{Htpasswd: users, ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}})
	h := s.Handler()
	from := func(addr string) func(*http.Request) { return func(r *http.Request) { r.RemoteAddr = addr } }
	cases := []struct {
		name string
		mod  []func(*http.Request)
		want int
	}{
		{"nobody", nil, http.StatusUnauthorized},
		{"wrong password", []func(*http.Request){func(r *http.Request) { r.SetBasicAuth("alice", "guess") }}, http.StatusUnauthorized},
		{"alice", []func(*http.Request){func(r *http.Request) { r.SetBasicAuth("alice", "s3cret") }}, http.StatusOK},
		{"header from a stranger", []func(*http.Request){from("10.0.0.6:1234"), func(r *http.Request) { r.Header.Set("X-Forwarded-User", "bob") }}, http.StatusUnauthorized},
		{"header from the proxy", []func(*http.Request){from("10.0.0.5:1234"), func(r *http.Request) { r.Header.Set("X-Forwarded-User", "bob") }}, http.StatusOK},
		{"header from the proxy range", []func(*http.Request){from("192.168.0.77:1234"), func(r *http.Request) { r.Header.Set("X-Forwarded-User", "bob") }}, http.StatusOK},
	}
	for _, c := range cases {
		if w := get(t, h, "/search", c.mod...); w.Code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, w.Code, c.want)
		}
	}
	if _, err := LoadHtpasswd(writeFile(t, "bob:plaintext\n")); err == nil {
		t.Error("a plain-text password was accepted in the htpasswd file")
	}
	for addr, want := range map[string]bool{"127.0.0.1:9092": true, "[::1]:9092": true, "localhost:1": true, "0.0.0.0:9092": false, ":9092": false, "10.1.2.3:80": false} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
	if _, err := ParseProxies("not-an-ip"); err == nil {
		t.Error("ParseProxies accepted a name")
	}
	_ = netip.Prefix{}
}

func writeFile(t *testing.T, content string) string {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPagesWithoutScript: every page is whole HTML from the server, with
// the security headers, and every asset comes from the binary.
func TestPagesWithoutScript(t *testing.T) {
	s, _ := console(t, Config{Access: Access{Loopback: true}, Sinks: []Sink{{Name: "webhook", Kind: "webhook"}}})
	h := s.Handler()
	for _, target := range []string{"/", "/search", "/deadletters", "/asof?source=veeam", "/static/style.css", "/static/live.js", "/live/overview"} {
		w := get(t, h, target)
		if w.Code >= 500 {
			t.Errorf("%s: status %d: %s", target, w.Code, w.Body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", target, csp)
		}
		body := w.Body.String()
		if strings.Contains(body, "https://") || strings.Contains(body, "http://") && !strings.HasPrefix(target, "/static") && !strings.Contains(body, `xmlns="http://www.w3.org/2000/svg"`) {
			t.Errorf("%s refers to another site", target)
		}
	}
	w := get(t, h, "/")
	for _, want := range []string{`<table>`, `<svg class="chart"`, `webhook`, `class="bar"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	b, _ := io.ReadAll(get(t, h, "/asof.csv?source=veeam&at=now").Body)
	if !strings.HasPrefix(string(b), "source,id,email") || !strings.Contains(string(b), "u-1") || !strings.Contains(string(b), "'=cmd|") {
		t.Errorf("CSV: %q", b)
	}
}

func TestCSVCellsAreNotFormulas(t *testing.T) {
	for in, want := range map[string]string{"=1+1": "'=1+1", "@SUM(A1)": "'@SUM(A1)", "-2": "'-2", "plain": "plain", "": ""} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChartOneBarPerDayWithEvents(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	evs := []EventRef{
		{Type: events.TypeRegistered, Time: now.Add(-time.Hour)},
		{Type: events.TypeRetired, Time: now.Add(-2 * time.Hour)},
		{Type: events.TypeRegistered, Time: now.AddDate(0, 0, -5)},
		{Type: events.TypeRegistered, Time: now.AddDate(0, 0, -40)}, // beyond the chart
	}
	days, types := countDays(evs, now, 30)
	svg := string(chartSVG(days, types))
	if n := strings.Count(svg, `<g class="bar"`); n != 2 {
		t.Errorf("%d bars, want 2", n)
	}
	if !strings.Contains(svg, `data-day="2026-12-04"`) || !strings.Contains(svg, `data-day="2026-11-29"`) {
		t.Errorf("bars on the wrong days: %s", svg)
	}
	if n := strings.Count(svg, "<rect"); n != 3 {
		t.Errorf("%d segments, want 3 (two types today, one five days ago)", n)
	}
	for n, want := range map[int]int{0: 4, 3: 4, 5: 8, 9: 20, 21: 40, 1234: 2000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
}
