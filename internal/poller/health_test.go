package poller_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// clock is a settable time source for the guard's hold time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func checkFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func veeamUser(i int) veeamtest.User {
	return veeamtest.User{InstanceUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), UserName: fmt.Sprintf("u%d", i), Status: "Enabled", Role: "CompanyUser"}
}

// guardEnv is one veeam source of 30 users behind a poller with a fake clock.
type guardEnv struct {
	fake  *veeamtest.Server
	url   string
	clock *clock
	e     *env
}

func newGuardEnv(t *testing.T) *guardEnv {
	t.Helper()
	e := setup(t, poller.Config{})
	g := &guardEnv{fake: veeamtest.NewServer("api-key"), clock: &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}, e: e}
	for i := range 30 {
		g.fake.Put(veeamUser(i))
	}
	srv := httptest.NewServer(g.fake)
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func (g *guardEnv) poller(t *testing.T, guard poller.Guard) *poller.Poller {
	t.Helper()
	c, err := veeam.New(veeam.Config{Name: "big", BaseURL: g.url, Token: "api-key", Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	return poller.New(g.e.js, g.e.h, poller.Config{Guard: guard, Now: g.clock.Now}, poller.SourceConfig{Source: c, Interval: time.Hour})
}

func runBig(t *testing.T, p *poller.Poller) poller.Result {
	t.Helper()
	res, err := p.RunOnce(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestMassRemovalGuard(t *testing.T) {
	hold := poller.Guard{MinRemovals: 10, MaxRatio: 0.2, Hold: time.Hour}

	t.Run("small removal passes", func(t *testing.T) {
		g := newGuardEnv(t)
		p := g.poller(t, hold)
		runBig(t, p)
		for i := range 3 {
			g.fake.Remove(veeamUser(i).InstanceUID)
		}
		if res := runBig(t, p); res.Events != 3 || res.Held != 0 {
			t.Fatalf("removing 3 of 30: %+v", res)
		}
	})

	t.Run("mass removal is held until it persists for the hold time", func(t *testing.T) {
		g := newGuardEnv(t)
		p := g.poller(t, hold)
		runBig(t, p)
		for i := range 15 {
			g.fake.Remove(veeamUser(i).InstanceUID)
		}
		if res := runBig(t, p); res.Events != 0 || res.Held != 15 {
			t.Fatalf("first sight of 15 of 30 missing: %+v", res)
		}
		if h := p.Health()["big"]; h.RemovalsHeld != 15 {
			t.Fatalf("health does not report the held removals: %+v", h)
		}
		g.clock.Add(59 * time.Minute)
		if res := runBig(t, p); res.Events != 0 || res.Held != 15 {
			t.Fatalf("before the hold time: %+v", res)
		}
		g.clock.Add(2 * time.Minute)
		if res := runBig(t, p); res.Events != 15 || res.Held != 0 {
			t.Fatalf("after the hold time: %+v", res)
		}
		if h := p.Health()["big"]; h.RemovalsHeld != 0 {
			t.Fatalf("health still reports held removals: %+v", h)
		}
		if n := g.e.streamMsgs(t); n != 15 {
			t.Fatalf("stream has %d events, want 15 retirements", n)
		}
	})

	t.Run("a different set of missing users restarts the clock", func(t *testing.T) {
		g := newGuardEnv(t)
		p := g.poller(t, hold)
		runBig(t, p)
		for i := range 15 {
			g.fake.Remove(veeamUser(i).InstanceUID)
		}
		runBig(t, p)
		g.clock.Add(50 * time.Minute)
		g.fake.Remove(veeamUser(20).InstanceUID)
		runBig(t, p)
		g.clock.Add(20 * time.Minute) // 70 min after the first, 20 after the change
		if res := runBig(t, p); res.Events != 0 || res.Held != 16 {
			t.Fatalf("changed set released early: %+v", res)
		}
	})

	t.Run("raising the ratio releases at once", func(t *testing.T) {
		g := newGuardEnv(t)
		runBig(t, g.poller(t, hold))
		for i := range 15 {
			g.fake.Remove(veeamUser(i).InstanceUID)
		}
		if res := runBig(t, g.poller(t, hold)); res.Held != 15 {
			t.Fatalf("not held: %+v", res)
		}
		if res := runBig(t, g.poller(t, poller.Guard{MinRemovals: 10, MaxRatio: 0.6, Hold: time.Hour})); res.Events != 15 || res.Held != 0 {
			t.Fatalf("with MAX_REMOVAL_RATIO 0.6: %+v", res)
		}
	})

	t.Run("a drop to an empty directory is held whatever the ratio", func(t *testing.T) {
		g := newGuardEnv(t)
		p := g.poller(t, poller.Guard{MinRemovals: 10, MaxRatio: 1, Hold: time.Hour})
		runBig(t, p)
		for i := range 30 {
			g.fake.Remove(veeamUser(i).InstanceUID)
		}
		if res := runBig(t, p); res.Events != 0 || res.Held != 30 {
			t.Fatalf("drop to empty: %+v", res)
		}
	})
}

const realToken = "eyJ0b2tlbiI6InJlYWwiLCJleHBEYXRlIjoiMjAyNy0wMS0wMVQwMDowMDowMC0wMDAwIiwib3JnTmFtZSI6IkV4YW1wbGUifQ=="

// A source whose token is refused stops, is reported, and resumes by itself
// when its token file changes; the other source keeps running meanwhile.
func TestStoppedSourceResumesWhenTokenFileChanges(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	vfake := vpptest.NewServer(realToken, vpptest.FixtureUsers()...)
	vs := httptest.NewServer(vfake)
	defer vs.Close()
	wfake := veeamtest.NewServer("api-key", veeamtest.FixtureUsers()...)
	ws := httptest.NewServer(wfake)
	defer ws.Close()

	tokenFile := filepath.Join(t.TempDir(), "vpp.token")
	const wrong = "d3JvbmctdG9rZW4tZG8tbm90LWxlYWs="
	if err := os.WriteFile(tokenFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func() (poller.Source, error) {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		return vpp.New(vpp.Config{Name: "vpp", BaseURL: vs.URL + "/mdm", SToken: string(b), Backoff: fast})
	}
	first, err := build()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: ws.URL, Token: "api-key", Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log, _ := logging.New(logs, "text", "info")
	reg := prometheus.NewRegistry()
	m := metrics.NewPoller(reg)
	p := poller.New(js, h, poller.Config{Logger: log, Metrics: m, WatchEvery: 20 * time.Millisecond},
		poller.SourceConfig{Source: first, Interval: 50 * time.Millisecond, Watch: []string{tokenFile}, Reload: build, Hint: "update VPP_STOKEN_FILE"},
		poller.SourceConfig{Source: wc, Interval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	checkFor(t, 10*time.Second, "vpp stopped", func() bool { return p.Health()["vpp"].State == poller.StateStopped })
	if got := testutil.ToFloat64(m.SourceHealthy.WithLabelValues("vpp", "vpp")); got != 0 {
		t.Fatalf("rollcall_source_healthy{source=vpp} = %v, want 0", got)
	}
	if !strings.Contains(p.Health()["vpp"].Error, "9622") {
		t.Fatalf("health error %q does not name the error", p.Health()["vpp"].Error)
	}
	// The stopped source is polled no more; the other one keeps going.
	vReq, wReq := vfake.Requests(), wfake.Requests()
	checkFor(t, 10*time.Second, "veeam keeps polling", func() bool { return wfake.Requests() >= wReq+3 })
	if vfake.Requests() != vReq {
		t.Fatalf("stopped source was polled %d more times", vfake.Requests()-vReq)
	}
	if p.Health()["veeam"].State != poller.StateOK {
		t.Fatalf("veeam health %+v", p.Health()["veeam"])
	}
	if !strings.Contains(logs.String(), "update VPP_STOKEN_FILE") {
		t.Fatalf("the log does not say what to do:\n%s", logs)
	}

	if err := os.WriteFile(tokenFile, []byte(realToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, "vpp resumed", func() bool { return p.Health()["vpp"].State == poller.StateOK })
	if got := testutil.ToFloat64(m.SourceHealthy.WithLabelValues("vpp", "vpp")); got != 1 {
		t.Fatalf("rollcall_source_healthy{source=vpp} = %v after resuming", got)
	}
	if strings.Contains(logs.String(), wrong) || strings.Contains(logs.String(), realToken) {
		t.Fatal("a token reached the logs")
	}
}

// expiring wraps a source with a credential expiry.
type expiring struct {
	poller.Source
	exp time.Time
}

func (e expiring) TokenExpiry() (time.Time, bool) { return e.exp, true }

func TestTokenExpiryWarning(t *testing.T) {
	e := setup(t, poller.Config{})
	vs := httptest.NewServer(e.vpp)
	defer vs.Close()
	c, _ := vpp.New(vpp.Config{Name: "vpp", BaseURL: vs.URL + "/mdm", SToken: stoken, Backoff: fast})
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		exp  time.Time
		want string
	}{
		{"far away", now.Add(90 * 24 * time.Hour), ""},
		{"within 30 days", now.Add(10 * 24 * time.Hour), "expires soon"},
		{"expired", now.Add(-time.Hour), "has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			log, _ := logging.New(logs, "text", "info")
			m := metrics.NewPoller(prometheus.NewRegistry())
			p := poller.New(e.js, e.h, poller.Config{Logger: log, Metrics: m, Now: func() time.Time { return now }},
				poller.SourceConfig{Source: expiring{c, tt.exp}, Interval: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			checkFor(t, 10*time.Second, "first run", func() bool { return p.Health()["vpp"].State != poller.StateStarting })
			cancel()
			<-done
			if got := testutil.ToFloat64(m.TokenExpiry.WithLabelValues("vpp")); got != float64(tt.exp.Unix()) {
				t.Fatalf("token expiry metric = %v, want %v", got, tt.exp.Unix())
			}
			if tt.want == "" && (strings.Contains(logs.String(), "expires soon") || strings.Contains(logs.String(), "has expired")) {
				t.Fatalf("warned about a distant expiry:\n%s", logs)
			}
			if tt.want != "" && !strings.Contains(logs.String(), tt.want) {
				t.Fatalf("no %q warning:\n%s", tt.want, logs)
			}
		})
	}
}
