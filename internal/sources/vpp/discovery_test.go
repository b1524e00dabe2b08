package vpp_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// configSecret stands for anything in a service configuration answer that
// must not reach an error or a log line.
const configSecret = "C0NFIG-S3CRET"

// discoFake starts vpptest and returns it with its origin; the service
// configuration is at origin+"/mdm/VPPServiceConfigSrv".
func discoFake(t *testing.T, users ...vpptest.User) (*vpptest.Server, string) {
	t.Helper()
	s := vpptest.NewServer(testToken, users...)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// withDiscovery turns on service discovery at origin and points BaseURL at
// a closed port, so that any request that bypasses discovery fails.
func withDiscovery(origin string) func(*vpp.Config) {
	return func(c *vpp.Config) {
		c.ServiceConfigURL = origin + "/mdm/VPPServiceConfigSrv"
		c.BaseURL = "http://127.0.0.1:1/nowhere"
	}
}

// clock is a goroutine-safe clock that tests move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// noLeak fails the test when err or the logs carry the sToken or the
// marker of a service configuration answer.
func noLeak(t *testing.T, h harness, err error) {
	t.Helper()
	for _, secret := range []string{testToken[:20], "S3CRET", configSecret} {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%q leaked into error: %v", secret, err)
		}
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("%q leaked into logs:\n%s", secret, h.logs)
		}
	}
}

func TestServiceDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name        string
		users       int
		batchSize   int
		usersPath   string // where the fake serves users; "" = /mdm/getVPPUsersSrv
		wantPages   int
		wantConfigs int
	}{
		{"users URL from the configuration", 3, 10, "", 1, 1},
		{"users URL elsewhere than BaseURL would say", 3, 10, "/elsewhere/v1/getVPPUsersSrv", 1, 1},
		{"one read for a whole listing", 7, 2, "/mdm2/getVPPUsersSrv", 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, origin := discoFake(t, makeUsers(tc.users)...)
			s.SetBatchSize(tc.batchSize)
			if tc.usersPath != "" {
				s.SetUsersPath(tc.usersPath)
			}
			h := newClient(t, "", withDiscovery(origin))
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if len(snap.Users) != tc.users || snap.Pages != tc.wantPages || !snap.Complete {
				t.Errorf("users=%d pages=%d complete=%v, want %d %d true", len(snap.Users), snap.Pages, snap.Complete, tc.users, tc.wantPages)
			}
			if got := s.ConfigRequests(); got != tc.wantConfigs {
				t.Errorf("config requests = %d, want %d", got, tc.wantConfigs)
			}
			if got := s.Requests(); got != tc.wantPages {
				t.Errorf("users requests = %d, want %d (none to a moved URL)", got, tc.wantPages)
			}
			noLeak(t, h, err)
		})
	}
}

func TestServiceConfigReReadAfterTTL(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ttl         time.Duration // 0: the default, Apple's five minutes
		steps       []time.Duration
		wantConfigs []int // config requests after each step's snapshot
	}{
		{"default five minutes", 0, []time.Duration{0, 4 * time.Minute, 59 * time.Second, 2 * time.Second, time.Minute}, []int{1, 1, 1, 2, 2}},
		{"configured TTL", time.Minute, []time.Duration{0, 30 * time.Second, 31 * time.Second, 61 * time.Second}, []int{1, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, origin := discoFake(t, makeUsers(2)...)
			var clk clock
			h := newClient(t, "", withDiscovery(origin), func(c *vpp.Config) { c.ServiceConfigTTL = tc.ttl })
			vpp.SetClock(h.client, clk.now)
			for i, step := range tc.steps {
				clk.advance(step)
				if _, err := h.client.Snapshot(context.Background(), sources.Request{}); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := s.ConfigRequests(); got != tc.wantConfigs[i] {
					t.Errorf("after step %d (+%v): config requests = %d, want %d", i, step, got, tc.wantConfigs[i])
				}
			}
		})
	}
}

// moveAfter wraps the fake and moves its users path just before the n-th
// users request (1-based) reaches it.
func moveAfter(s *vpptest.Server, n int, path string) http.Handler {
	var mu sync.Mutex
	seen := 0
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/VPPServiceConfigSrv") {
			mu.Lock()
			seen++
			if seen == n {
				s.SetUsersPath(path)
			}
			mu.Unlock()
		}
		s.ServeHTTP(w, r)
	})
}

func TestURLMoved(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup returns the origin of the fake; it may wrap the fake.
		setup        func(t *testing.T, s *vpptest.Server) string
		discovery    bool
		wantErr      bool
		wantRequests int // users requests, 9617 answers included
		wantConfigs  int
		wantInError  string
	}{
		{
			name: "moved mid-listing: re-read and continue at the new URL",
			setup: func(t *testing.T, s *vpptest.Server) string {
				ts := httptest.NewServer(moveAfter(s, 2, "/mdm2/getVPPUsersSrv"))
				t.Cleanup(ts.Close)
				return ts.URL
			},
			discovery: true, wantRequests: 4, wantConfigs: 2, // batch 1, 9617, batch 2 again, batch 3
		},
		{
			name: "config still points at the moved URL",
			setup: func(t *testing.T, s *vpptest.Server) string {
				s.SetUsersPath("/new/getVPPUsersSrv")
				// A stale configuration that keeps advertising the old path.
				mux := http.NewServeMux()
				var origin string
				mux.HandleFunc("POST /mdm/VPPServiceConfigSrv", func(w http.ResponseWriter, r *http.Request) {
					s.ServeHTTP(httptest.NewRecorder(), r) // counted
					_, _ = io.WriteString(w, `{"status":0,"getUsersSrvUrl":"`+origin+`/mdm/getVPPUsersSrv"}`)
				})
				mux.Handle("/", s)
				ts := httptest.NewServer(mux)
				t.Cleanup(ts.Close)
				origin = ts.URL
				return ts.URL
			},
			discovery: true, wantErr: true, wantRequests: 2, wantConfigs: 2, wantInError: "again after re-reading",
		},
		{
			name: "without discovery 9617 fails the run and says what to set",
			setup: func(t *testing.T, s *vpptest.Server) string {
				s.SetUsersPath("/new/getVPPUsersSrv")
				ts := httptest.NewServer(s)
				t.Cleanup(ts.Close)
				return ts.URL
			},
			wantErr: true, wantRequests: 1, wantConfigs: 0, wantInError: "VPP_SERVICE_CONFIG_URL",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := vpptest.NewServer(testToken, makeUsers(3)...)
			s.SetBatchSize(1)
			origin := tc.setup(t, s)
			mod := func(c *vpp.Config) {}
			if tc.discovery {
				mod = withDiscovery(origin)
			}
			h := newClient(t, origin+"/mdm", mod)
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if got := s.Requests(); got != tc.wantRequests {
				t.Errorf("users requests = %d, want %d", got, tc.wantRequests)
			}
			if got := s.ConfigRequests(); got != tc.wantConfigs {
				t.Errorf("config requests = %d, want %d", got, tc.wantConfigs)
			}
			noLeak(t, h, err)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				if len(snap.Users) != 3 || !snap.Complete {
					t.Errorf("users=%d complete=%v, want a complete listing of 3", len(snap.Users), snap.Complete)
				}
				if !strings.Contains(h.logs.String(), "9617") {
					t.Errorf("move not logged:\n%s", h.logs)
				}
				return
			}
			var ae *vpp.APIError
			if !errors.As(err, &ae) || ae.Number != vpp.ErrURLMoved {
				t.Fatalf("err = %v, want *APIError 9617", err)
			}
			if ae.StopsSource() {
				t.Error("9617 should not stop the source")
			}
			if !strings.Contains(err.Error(), tc.wantInError) || !strings.Contains(err.Error(), "source vpp: batch 1") {
				t.Errorf("error %q should name source, batch and say %q", err, tc.wantInError)
			}
		})
	}
}

func TestURLMovedBetweenRuns(t *testing.T) {
	s, origin := discoFake(t, makeUsers(2)...)
	h := newClient(t, "", withDiscovery(origin))
	ctx := context.Background()
	full, err := h.client.Snapshot(ctx, sources.Request{})
	if err != nil {
		t.Fatal(err)
	}
	s.SetUsersPath("/moved/getVPPUsersSrv")
	s.Put(vpptest.User{UserID: 7, Email: "new@example.com", Status: vpptest.StatusRegistered})
	inc, err := h.client.Snapshot(ctx, sources.Request{Cursor: full.Cursor})
	if err != nil {
		t.Fatalf("incremental after the move: %v", err)
	}
	if got := ids(inc.Users); len(got) != 1 || got[0] != "7" {
		t.Errorf("incremental ids = %v, want [7]", got)
	}
	if s.ConfigRequests() != 2 || s.Requests() != 3 {
		t.Errorf("config requests = %d, users requests = %d, want 2 and 3", s.ConfigRequests(), s.Requests())
	}
}

// configScript serves one fixed VPPServiceConfigSrv answer.
func configScript(t *testing.T, status int, header http.Header, body string) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/mdm/VPPServiceConfigSrv", &n
}

func TestServiceConfigFailures(t *testing.T) {
	for _, tc := range []struct {
		name         string
		status       int
		body         string
		wantAttempts int32
		check        func(error) bool
	}{
		{"503 until attempts run out", 503, `busy`, 3, func(err error) bool {
			var se *httpx.StatusError
			return errors.As(err, &se) && se.Code == 503
		}},
		{"404 is permanent", 404, `no`, 1, func(err error) bool {
			var se *httpx.StatusError
			return errors.As(err, &se) && se.Code == 404
		}},
		{"malformed JSON", 200, `{"getUsersSrvUrl":"` + configSecret + `"`, 1, func(err error) bool {
			return errors.Is(err, vpp.ErrServiceConfig)
		}},
		{"wrong type", 200, `{"status":0,"getUsersSrvUrl":["` + configSecret + `"]}`, 1, func(err error) bool {
			return errors.Is(err, vpp.ErrServiceConfig)
		}},
		{"no getUsersSrvUrl", 200, `{"status":0,"getUserSrvUrl":"http://x/` + configSecret + `"}`, 1, func(err error) bool {
			return errors.Is(err, vpp.ErrServiceConfig)
		}},
		{"getUsersSrvUrl not http", 200, `{"status":0,"getUsersSrvUrl":"ftp://` + configSecret + `@example.com/getVPPUsersSrv"}`, 1, func(err error) bool {
			return errors.Is(err, vpp.ErrServiceConfig)
		}},
		{"getUsersSrvUrl unparsable", 200, `{"status":0,"getUsersSrvUrl":"http://[` + configSecret + `"}`, 1, func(err error) bool {
			return errors.Is(err, vpp.ErrServiceConfig)
		}},
		{"status -1 with a message", 200, `{"status":-1,"errorNumber":9602,"errorMessage":"` + configSecret + `"}`, 1, func(err error) bool {
			var ae *vpp.APIError
			return errors.As(err, &ae) && ae.Number == 9602
		}},
		{"status -1 9603 is retried", 200, `{"status":-1,"errorNumber":9603,"errorMessage":"` + configSecret + `"}`, 7, func(err error) bool {
			var ae *vpp.APIError
			return errors.As(err, &ae) && ae.Number == 9603
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgURL, n := configScript(t, tc.status, nil, tc.body)
			h := newClient(t, "", func(c *vpp.Config) {
				c.ServiceConfigURL = cfgURL
				c.MaxAttempts = 3
			})
			_, err := h.client.Snapshot(context.Background(), sources.Request{})
			if err == nil || !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(err.Error(), "source vpp") || !strings.Contains(err.Error(), "VPPServiceConfigSrv") {
				t.Errorf("error %q should name the source and the service", err)
			}
			if got := n.Load(); got != tc.wantAttempts {
				t.Errorf("config requests = %d, want %d", got, tc.wantAttempts)
			}
			noLeak(t, h, err)
		})
	}
}

func TestServiceConfigNoDowngrade(t *testing.T) {
	var origin string
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"status":0,"getUsersSrvUrl":"http://`+strings.TrimPrefix(origin, "https://")+`/mdm/getVPPUsersSrv"}`)
	}))
	defer ts.Close()
	origin = ts.URL
	h := newClient(t, "", func(c *vpp.Config) {
		c.ServiceConfigURL = ts.URL + "/mdm/VPPServiceConfigSrv"
		c.HTTPClient = ts.Client()
	})
	_, err := h.client.Snapshot(context.Background(), sources.Request{})
	if !errors.Is(err, vpp.ErrServiceConfig) || !strings.Contains(err.Error(), "https") {
		t.Fatalf("err = %v, want a refusal to send the sToken over http", err)
	}
}

func TestServiceConfigRecovers(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fault       vpptest.Fault
		stale       bool // the failure hits a re-read, with a URL at hand
		wantConfigs int
		wantLog     string
	}{
		{"first read 503 then ok", vpptest.Fault{ServiceConfig: true, HTTPStatus: 503}, false, 2, "retrying"},
		{"first read 9646 then ok", vpptest.Fault{ServiceConfig: true, ErrorNumber: vpp.ErrTooManyRequests}, false, 2, "retrying"},
		{"stale re-read fails: keep the URL", vpptest.Fault{ServiceConfig: true, HTTPStatus: 500, Times: 5}, true, 2, "keeping"},
		{"stale re-read truncated: keep the URL", vpptest.Fault{ServiceConfig: true, Truncate: true}, true, 2, "keeping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, origin := discoFake(t, makeUsers(2)...)
			var clk clock
			h := newClient(t, "", withDiscovery(origin))
			vpp.SetClock(h.client, clk.now)
			ctx := context.Background()
			if tc.stale {
				if _, err := h.client.Snapshot(ctx, sources.Request{}); err != nil {
					t.Fatal(err)
				}
				clk.advance(time.Hour)
			}
			s.InjectFault(tc.fault)
			snap, err := h.client.Snapshot(ctx, sources.Request{})
			if err != nil || len(snap.Users) != 2 {
				t.Fatalf("users=%d err=%v", len(snap.Users), err)
			}
			if got := s.ConfigRequests(); got != tc.wantConfigs {
				t.Errorf("config requests = %d, want %d", got, tc.wantConfigs)
			}
			if !strings.Contains(h.logs.String(), tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, h.logs)
			}
			if tc.stale {
				// A failed re-read is tried again only after another TTL.
				if _, err := h.client.Snapshot(ctx, sources.Request{}); err != nil {
					t.Fatal(err)
				}
				if got := s.ConfigRequests(); got != tc.wantConfigs {
					t.Errorf("config requests after another run = %d, want %d", got, tc.wantConfigs)
				}
			}
			noLeak(t, h, err)
		})
	}
}

func TestServiceConfigRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	s, origin := discoFake(t, makeUsers(1)...)
	s.InjectFault(vpptest.Fault{ServiceConfig: true, HTTPStatus: 503, RetryAfter: "1"})
	h := newClient(t, "", withDiscovery(origin))
	start := time.Now()
	if _, err := h.client.Snapshot(context.Background(), sources.Request{}); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("config re-read after %v, want at least 1s", elapsed)
	}
}

func TestNewServiceConfigURL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     vpp.Config
		wantErr bool
	}{
		{"discovery without base URL", vpp.Config{Name: "vpp", ServiceConfigURL: vpp.DefaultServiceConfigURL, SToken: "t"}, false},
		{"discovery with base URL", vpp.Config{Name: "vpp", BaseURL: "https://vpp.itunes.apple.com/mdm", ServiceConfigURL: vpp.DefaultServiceConfigURL, SToken: "t"}, false},
		{"no base URL, no discovery", vpp.Config{Name: "vpp", SToken: "t"}, true},
		{"bad service config URL", vpp.Config{Name: "vpp", ServiceConfigURL: "vpp.itunes.apple.com/mdm/VPPServiceConfigSrv", SToken: "t"}, true},
		{"bad base URL beside discovery", vpp.Config{Name: "vpp", BaseURL: "nope", ServiceConfigURL: vpp.DefaultServiceConfigURL, SToken: "t"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vpp.New(tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// internalErrors answers the first n requests with 9603, the one numbered
// retryAfterAt (1-based) with a Retry-After header too, and passes later
// requests to the fake.
func internalErrors(s *vpptest.Server, n, retryAfterAt int, retryAfter string) http.Handler {
	var seen atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(seen.Add(1))
		if i > n {
			s.ServeHTTP(w, r)
			return
		}
		if i == retryAfterAt {
			w.Header().Set("Retry-After", retryAfter)
		}
		_, _ = io.WriteString(w, `{"status":-1,"errorNumber":9603,"errorMessage":"Internal error"}`)
	})
}

func TestInternalErrorSchedule(t *testing.T) {
	const pause = 50 * time.Millisecond
	for _, tc := range []struct {
		name         string
		failures     int // 9603 answers before the fake answers normally
		waits        int // Config.InternalErrorWaits
		maxAttempts  int
		pause        time.Duration
		wantErr      bool
		wantRequests int
		minElapsed   time.Duration
		maxElapsed   time.Duration // 0: no bound
	}{
		{name: "four failures: backoff only", failures: 4, pause: time.Minute, wantRequests: 5, maxElapsed: 30 * time.Second},
		{name: "five failures, then a pause", failures: 5, pause: pause, wantRequests: 6, minElapsed: pause},
		{name: "six failures, two pauses", failures: 6, pause: pause, wantRequests: 7, minElapsed: 2 * pause},
		{name: "forever: fails after 5 + default 2 waits", failures: 100, pause: pause, wantErr: true, wantRequests: 7, minElapsed: 2 * pause},
		{name: "forever with 3 waits", failures: 100, waits: 3, pause: pause, wantErr: true, wantRequests: 8, minElapsed: 3 * pause},
		{name: "forever with no waits", failures: 100, waits: -1, pause: time.Minute, wantErr: true, wantRequests: 5, maxElapsed: 30 * time.Second},
		{name: "MaxAttempts does not cut 9603 short", failures: 3, maxAttempts: 2, pause: pause, wantRequests: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(1)...)
			s.InjectFault(vpptest.Fault{ErrorNumber: vpp.ErrInternal, Times: tc.failures})
			h := newClient(t, base, func(c *vpp.Config) {
				c.InternalErrorPause = tc.pause
				c.InternalErrorWaits = tc.waits
				c.MaxAttempts = tc.maxAttempts
			})
			start := time.Now()
			_, err := h.client.Snapshot(context.Background(), sources.Request{})
			elapsed := time.Since(start)
			if got := s.Requests(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			if elapsed < tc.minElapsed || (tc.maxElapsed > 0 && elapsed > tc.maxElapsed) {
				t.Errorf("took %v, want between %v and %v", elapsed, tc.minElapsed, tc.maxElapsed)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				return
			}
			var ae *vpp.APIError
			if !errors.As(err, &ae) || ae.Number != vpp.ErrInternal {
				t.Fatalf("err = %v, want *APIError 9603", err)
			}
			if !strings.Contains(err.Error(), "source vpp: batch 1: giving up") {
				t.Errorf("error %q should name source and batch", err)
			}
			if tc.waits >= 0 && !strings.Contains(h.logs.String(), "pausing") {
				t.Errorf("pause not logged:\n%s", h.logs)
			}
		})
	}
}

func TestInternalErrorPauseNeverUndercutsRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		retryAfterAt int // which 9603 answer asks for a second
	}{
		{"during backoff", 2},
		{"at the pause", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := vpptest.NewServer(testToken, makeUsers(1)...)
			ts := httptest.NewServer(internalErrors(s, 5, tc.retryAfterAt, "1"))
			t.Cleanup(ts.Close)
			h := newClient(t, ts.URL+"/mdm", func(c *vpp.Config) { c.InternalErrorPause = time.Millisecond })
			start := time.Now()
			if _, err := h.client.Snapshot(context.Background(), sources.Request{}); err != nil {
				t.Fatal(err)
			}
			if elapsed := time.Since(start); elapsed < time.Second {
				t.Errorf("took %v, want the Retry-After of 1s honoured", elapsed)
			}
			if s.Requests() != 1 {
				t.Errorf("requests after the errors = %d, want 1", s.Requests())
			}
		})
	}
}

func TestTokenInfo(t *testing.T) {
	realTok := base64.StdEncoding.EncodeToString([]byte(`{"token":"VHJ1c3QgbWUsIEknbSBhIHRva2Vu","expDate":"2027-08-15T18:13:52-0700","orgName":"Example School"}`))
	want := time.Date(2027, 8, 15, 18, 13, 52, 0, time.FixedZone("", -7*3600))
	for _, tc := range []struct {
		name    string
		token   string
		wantOK  bool
		wantOrg string
	}{
		{"real format", realTok, true, "Example School"},
		{"real format from a file", "\n  " + realTok + "\n", true, "Example School"},
		{"undecodable test token", "test-stoken", false, ""},
		{"base64 but not a token", base64.StdEncoding.EncodeToString([]byte(`{"orgName":"X"}`)), false, ""},
		{"bad expDate", base64.StdEncoding.EncodeToString([]byte(`{"token":"a","expDate":"soon","orgName":"X"}`)), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: "https://vpp.itunes.apple.com/mdm", SToken: tc.token})
			if err != nil {
				t.Fatalf("New: %v (an undecodable token is not an error)", err)
			}
			info, ok := c.TokenInfo()
			if ok != tc.wantOK || info.OrgName != tc.wantOrg {
				t.Fatalf("TokenInfo = %+v, %v; want org %q ok=%v", info, ok, tc.wantOrg, tc.wantOK)
			}
			if ok && !info.ExpDate.Equal(want) {
				t.Errorf("ExpDate = %v, want %v", info.ExpDate, want)
			}
			if !ok && !info.ExpDate.IsZero() {
				t.Errorf("ExpDate = %v with ok=false", info.ExpDate)
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		number       int
		stops, fully bool
	}{
		{vpp.ErrMissingArgument, false, false},
		{vpp.ErrLoginRequired, true, false},
		{vpp.ErrInvalidArgument, false, false},
		{vpp.ErrInternal, false, false},
		{vpp.ErrURLMoved, false, false},
		{vpp.ErrTokenExpired, true, false},
		{vpp.ErrInvalidToken, true, false},
		{vpp.ErrTokenRevoked, true, false},
		{vpp.ErrTokenNotApplicable, false, true},
		{vpp.ErrBatchNotRecoverable, false, true},
		{vpp.ErrServiceRemoved, true, false},
		{vpp.ErrMaintenance, false, false},
		{vpp.ErrTooManyRequests, false, false},
		{9999, false, false},
	} {
		e := &vpp.APIError{Number: tc.number}
		if e.StopsSource() != tc.stops || e.RestartsFull() != tc.fully {
			t.Errorf("%d: StopsSource=%v RestartsFull=%v, want %v %v", tc.number, e.StopsSource(), e.RestartsFull(), tc.stops, tc.fully)
		}
	}
}
