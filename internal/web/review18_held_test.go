package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"context"
	"errors"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestReview18Held: attacks that the console withstood (review of issue 18).
func TestReview18Held(t *testing.T) {
	called := 0
	proxies, _ := ParseProxies("10.0.0.0/24, ::1")
	s, js := console(t, Config{Access: Access{ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies},
		Redrive: func(context.Context, string, string) (deadletter.RedriveStats, error) {
			called++
			return deadletter.RedriveStats{}, errors.New("no")
		}})
	h := s.Handler()
	as := func(addr, user string) func(*http.Request) {
		return func(r *http.Request) {
			r.RemoteAddr = addr
			if user != "" {
				r.Header.Set("X-Forwarded-User", user)
			}
		}
	}
	// The trusted range's edges, IPv6 loopback as a proxy, an IPv4-mapped
	// proxy address.
	for addr, want := range map[string]int{
		"10.0.0.0:1": 200, "10.0.0.255:1": 200, "10.0.1.0:1": 401, "9.255.255.255:1": 401,
		"[::1]:1": 200, "[::ffff:10.0.0.7]:1": 200, "[::2]:1": 401, "garbage": 401,
	} {
		if w := get(t, h, "/search", as(addr, "bob")); w.Code != want {
			t.Errorf("header from %s: status %d, want %d", addr, w.Code, want)
		}
	}
	// CSRF: another user's token, a cross-site Origin, no token.
	post := func(user string, form url.Values, hdr map[string]string) int {
		r := httptest.NewRequest(http.MethodPost, "/deadletters/redrive", strings.NewReader(form.Encode()))
		as("10.0.0.5:1", user)(r)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for name, c := range map[string]struct {
		user string
		form url.Values
		hdr  map[string]string
	}{
		"bob with alice's token": {"bob", url.Values{"sink": {"webhook"}, "csrf": {s.csrf.token("alice")}}, nil},
		"no token":               {"bob", url.Values{"sink": {"webhook"}}, nil},
		"token in the query":     {"bob", url.Values{"sink": {"webhook"}}, nil},
		"cross-site origin":      {"bob", url.Values{"sink": {"webhook"}, "csrf": {s.csrf.token("bob")}}, map[string]string{"Origin": "https://evil.example"}},
		"sec-fetch-site":         {"bob", url.Values{"sink": {"webhook"}, "csrf": {s.csrf.token("bob")}}, map[string]string{"Sec-Fetch-Site": "same-site"}},
	} {
		if code := post(c.user, c.form, c.hdr); code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, code)
		}
	}
	if w := get(t, h, "/deadletters/redrive?sink=webhook&csrf="+s.csrf.token("bob"), as("10.0.0.5:1", "bob")); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET redrive: status %d", w.Code)
	}
	if called != 0 {
		t.Errorf("redrive ran %d times", called)
	}

	// Ids that are prefixes of each other, and the same id in two sources:
	// each timeline holds its own events only.
	ctx := context.Background()
	for _, u := range []events.User{
		{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-10", Email: "ten@example.com", Status: "enabled"},
		{Source: "vpp", SourceKind: events.KindVPP, ID: "u-1", Email: "vpp-one@example.com", Status: "enabled"},
	} {
		publish(ctx, t, js, events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: time.Now()})
	}
	testutil.CheckFor(t, 10*time.Second, "three events indexed", func() error {
		if s.Index().LastSeq() < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	bob := as("10.0.0.5:1", "bob")
	for target, want := range map[string][2]string{
		"/user?source=veeam&id=u-1":  {"evil@example.com", "ten@example.com"},
		"/user?source=veeam&id=u-10": {"ten@example.com", "vpp-one@example.com"},
		"/user?source=vpp&id=u-1":    {"vpp-one@example.com", "evil@example.com"},
	} {
		w := get(t, h, target, bob)
		body := w.Body.String()
		if w.Code != 200 || !strings.Contains(body, want[0]) || strings.Contains(body, want[1]) || strings.Count(body, `class="event-id"`) != 1 {
			t.Errorf("%s: status %d, has %s: %v, has %s: %v, %d event links", target, w.Code, want[0], strings.Contains(body, want[0]), want[1], strings.Contains(body, want[1]), strings.Count(body, `class="event-id"`))
		}
	}
	// Search for wildcard characters, empty, very long.
	for q, wantHits := range map[string]bool{"%": false, "*": false, "": false, strings.Repeat("a", 100000): false, "EVIL@EXAMPLE.COM": true} {
		w := get(t, h, "/search?"+url.Values{"q": {q}}.Encode(), bob)
		if w.Code != 200 || strings.Contains(w.Body.String(), "evil@example.com") != wantHits {
			t.Errorf("search %.20q: status %d, finds evil@: %v", q, w.Code, !wantHits)
		}
	}
	// As of: the future, garbage, paging past the end.
	for target, want := range map[string]int{
		"/asof?source=veeam&at=2999-01-01": 400, "/asof?source=veeam&at=%3Cscript%3E": 400,
		"/asof?source=veeam&date=2026-13-45": 400, "/asof?source=veeam&page=999999999999999999999": 200,
		"/asof?source=nosuch": 400, "/asof.csv?source=veeam&at=2999-01-01": 400,
	} {
		w := get(t, h, target, bob)
		if w.Code != want || strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("%s: status %d, want %d", target, w.Code, want)
		}
	}
}
