package pollerapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/version"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "stoken")
	if err := os.WriteFile(tokenFile, []byte("  abc  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no source", map[string]string{}, []string{"VPP_STOKEN", "VEEAM_BASE_URL"}},
		{"bad interval", map[string]string{"VPP_STOKEN": "x", "VPP_INTERVAL": "often"}, []string{"VPP_INTERVAL"}},
		{"page size out of range", map[string]string{"VEEAM_BASE_URL": "https://x", "VEEAM_TOKEN": "t", "VEEAM_PAGE_SIZE": "900"}, []string{"VEEAM_PAGE_SIZE"}},
		{"bad bool", map[string]string{"VPP_STOKEN": "x", "EMIT_INITIAL": "perhaps"}, []string{"EMIT_INITIAL"}},
		// Issue 14 point 7: values that used to pass.
		{"ratio NaN", map[string]string{"VPP_STOKEN": "x", "MAX_REMOVAL_RATIO": "NaN"}, []string{"MAX_REMOVAL_RATIO"}},
		{"negative full sync interval", map[string]string{"VPP_STOKEN": "x", "VPP_FULL_SYNC_INTERVAL": "-1h"}, []string{"VPP_FULL_SYNC_INTERVAL"}},
		{"negative duplicate window", map[string]string{"VPP_STOKEN": "x", "EVENTS_DUPLICATE_WINDOW": "-1s"}, []string{"EVENTS_DUPLICATE_WINDOW"}},
		{"token and token file", map[string]string{"VPP_STOKEN": "x", "VPP_STOKEN_FILE": tokenFile}, []string{"VPP_STOKEN", "VPP_STOKEN_FILE"}},
		{"missing token file", map[string]string{"VPP_STOKEN_FILE": filepath.Join(dir, "nope")}, []string{"VPP_STOKEN_FILE"}},
		{"veeam without credentials", map[string]string{"VEEAM_BASE_URL": "https://x"}, []string{"VEEAM_TOKEN", "VEEAM_USERNAME"}},
		{"bad log level", map[string]string{"VPP_STOKEN": "x", "LOG_LEVEL": "loud"}, []string{"LOG_LEVEL"}},
		{"bad SOURCES entry", map[string]string{"SOURCES": "eu-veeam"}, []string{"SOURCES", "eu-veeam"}},
		{"SOURCES with an unknown kind", map[string]string{"SOURCES": "eu:ldap"}, []string{"SOURCES"}},
		{"SOURCES with unprefixed variables", map[string]string{"SOURCES": "eu:veeam", "VEEAM_BASE_URL": "https://x"}, []string{"SOURCES", "VEEAM_BASE_URL"}},
		{"named source without its variables", map[string]string{"SOURCES": "eu:veeam"}, []string{"EU_VEEAM_BASE_URL"}},
		{"named source with a bad value", map[string]string{"SOURCES": "eu:veeam", "EU_VEEAM_BASE_URL": "https://x", "EU_VEEAM_TOKEN": "t", "EU_VEEAM_INTERVAL": "often"}, []string{"EU_VEEAM_INTERVAL"}},
		{"named source twice", map[string]string{"SOURCES": "eu:veeam,eu:vpp", "EU_VEEAM_BASE_URL": "https://x", "EU_VEEAM_TOKEN": "t"}, []string{"twice"}},
		{"two names, one prefix", map[string]string{"SOURCES": "eu-1:veeam,eu_1:veeam", "EU_1_VEEAM_BASE_URL": "https://x", "EU_1_VEEAM_TOKEN": "t"}, []string{"eu-1", "eu_1", "EU_1_"}},
		{"ratio out of range", map[string]string{"VPP_STOKEN": "x", "MAX_REMOVAL_RATIO": "1.5"}, []string{"MAX_REMOVAL_RATIO"}},
		{"bad embedded listen", map[string]string{"VPP_STOKEN": "x", "DATA_DIR": dir, "EMBEDDED_NATS_LISTEN": "nowhere"}, []string{"nowhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// No metrics listener: the default 127.0.0.1:9090 may be taken
			// (the compose test's Prometheus publishes it), and a taken
			// HTTP_ADDR is refused before the rest is checked.
			tt.env["HTTP_ADDR"] = ""
			err := pollerapp.Run(ctx, envconfig.MapLookuper(tt.env), &syncbuf.Buffer{})
			if err == nil {
				t.Fatal("Run accepted a bad configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
	if err := pollerapp.Run(context.Background(), envconfig.MapLookuper(nil), &syncbuf.Buffer{}); !errors.Is(err, pollerapp.ErrNoSource) {
		t.Fatalf("no source: %v", err)
	}
}

// The poller runs against APIs that reject its credentials; the secrets it
// was given must appear in no log line, even at debug level.
func TestSecretsNeverLogged(t *testing.T) {
	const vppSecret = "VlBQLXNlY3JldC1zdG9rZW4tZG8tbm90LWxlYWs="
	const veeamSecret = "veeam-secret-api-key-do-not-leak"
	sim := simulator.New(simulator.Config{})
	api := httptest.NewServer(sim.Handler())
	defer api.Close()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": t.TempDir(), "EMBEDDED_NATS_LISTEN": "127.0.0.1:0", "HTTP_ADDR": "", "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
			"ALLOW_INSECURE_HTTP": "true", "VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": vppSecret, "VPP_INTERVAL": "50ms",
			"VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": veeamSecret, "VEEAM_INTERVAL": "50ms",
		}), logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logs.String(), "source stopped") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no failed runs logged:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, s := range []string{vppSecret, veeamSecret} {
		if strings.Contains(out, s) {
			t.Fatalf("secret %q found in logs:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "9622") || !strings.Contains(out, "401") {
		t.Fatalf("logs do not explain the failures:\n%s", out)
	}
}

// Several sources of each kind through SOURCES, each with its own
// prefixed variables; one with a refused token stops while the others run,
// and /readyz says which.
func TestSeveralSourcesIsolated(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	api := httptest.NewServer(sim.Handler())
	defer api.Close()
	httpAddr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncbuf.Buffer{}
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": t.TempDir(), "EMBEDDED_NATS_LISTEN": "127.0.0.1:0", "HTTP_ADDR": httpAddr,
			"SOURCES": "eu:veeam,us:veeam,school:vpp", "ALLOW_INSECURE_HTTP": "true",
			"EU_VEEAM_BASE_URL": api.URL, "EU_VEEAM_TOKEN": simulator.DefaultVeeamToken, "EU_VEEAM_INTERVAL": "50ms",
			"US_VEEAM_BASE_URL": api.URL, "US_VEEAM_TOKEN": "wrong-key", "US_VEEAM_INTERVAL": "50ms",
			"SCHOOL_VPP_BASE_URL": api.URL + "/mdm", "SCHOOL_VPP_STOKEN": simulator.DefaultVPPToken, "SCHOOL_VPP_INTERVAL": "50ms",
		}), logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var ready map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready = readyz(t, httpAddr)
		checks, _ := ready["checks"].(map[string]any)
		if checks["source eu"] == "ok" && checks["source school"] == "ok" && strings.HasPrefix(fmt.Sprint(checks["source us"]), "stopped") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness never showed eu and school ok, us stopped: %v\n%s", ready, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ready["status"] != "not ready" {
		t.Fatalf("a stopped source must make the poller not ready: %v", ready)
	}
	if !strings.Contains(logs.String(), "Simulated School District") {
		t.Fatalf("the vpp token's organisation is not reported:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "US_VEEAM_TOKEN_FILE") {
		t.Fatalf("the stopped source's log line does not name its variable:\n%s", logs)
	}
}

func readyz(t *testing.T, addr string) map[string]any {
	t.Helper()
	res, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	return body
}

// TestAPIMetrics makes the Veeam API fail once and checks /metrics counts the
// failed request by status, the retry, and the successful run after it; and
// that the client's retry line in the JSON log carries the source and the
// run's id, the same id as the run's own lines.
func TestAPIMetrics(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	sim.Veeam.InjectFault(veeamtest.Fault{Status: http.StatusServiceUnavailable})
	api := httptest.NewServer(sim.Handler())
	defer api.Close()
	httpAddr, natsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncbuf.Buffer{}
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": httpAddr, "LOG_FORMAT": "json",
			"ALLOW_INSECURE_HTTP": "true", "VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": simulator.DefaultVeeamToken, "VEEAM_INTERVAL": "1h",
		}), logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testutil.MetricAtLeast(t, 30*time.Second, httpAddr, `rollcall_source_runs_total{outcome="success",source="veeam"}`, 1)
	for series, want := range map[string]float64{
		`rollcall_source_api_requests_total{code="503",source="veeam"}`: 1,
		`rollcall_source_api_retries_total{source="veeam"}`:             1,
		`rollcall_source_healthy{kind="veeam",source="veeam"}`:          1,
	} {
		got, err := testutil.Metric(httpAddr, series)
		if err != nil || got != want {
			t.Errorf("%s = %v (%v), want %v", series, got, err, want)
		}
	}
	if ok, err := testutil.Metric(httpAddr, `rollcall_source_api_requests_total{code="200",source="veeam"}`); err != nil || ok < 1 {
		t.Errorf("successful requests not counted: %v %v", ok, err)
	}
	b := version.Get()
	if v, err := testutil.Metric(httpAddr, fmt.Sprintf(`rollcall_build_info{goversion=%q,revision=%q,version=%q}`, b.GoVersion, b.Revision, b.Version)); err != nil || v != 1 {
		t.Errorf("rollcall_build_info = %v (%v), want 1 labelled with %+v", v, err, b)
	}
	// The first log line names the build.
	if first, _, _ := strings.Cut(logs.String(), "\n"); !strings.Contains(first, `"version":"`+b.Version+`"`) || !strings.Contains(first, `"revision":"`+b.Revision+`"`) {
		t.Errorf("first log line without the build: %s", first)
	}
	if users, _ := testutil.Metric(httpAddr, `rollcall_source_users{source="veeam"}`); users != float64(len(sim.Veeam.Users())) {
		t.Errorf("rollcall_source_users = %v, want %d", users, len(sim.Veeam.Users()))
	}

	runs := map[string]map[string]bool{} // message → run ids
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		msg, _ := rec["msg"].(string)
		if _, isRun := rec["next_run"]; isRun && rec["level"] == "INFO" {
			msg = "run complete" // the run's one info line (the seed's, here)
		}
		if msg != "veeam request failed; retrying" && msg != "run complete" {
			continue
		}
		if rec["source"] != "veeam" || rec["run"] == nil {
			t.Errorf("a run's log line lacks source or run id: %s", line)
		}
		if runs[msg] == nil {
			runs[msg] = map[string]bool{}
		}
		runs[msg][fmt.Sprint(rec["run"])] = true
	}
	if len(runs) != 2 || len(runs["run complete"]) != 1 || fmt.Sprint(runs["run complete"]) != fmt.Sprint(runs["veeam request failed; retrying"]) {
		t.Errorf("want the retry and the run's completion logged with one run id, got %v\n%s", runs, logs)
	}

	// Readiness names a missing stream.
	if r := readyz(t, httpAddr); r["status"] != "ready" {
		t.Fatalf("not ready after a successful run: %v", r)
	}
	// An operator deletes the stream, as the admin user.
	admin, err := os.ReadFile(filepath.Join(dataDir, pollerapp.AuthDir, "admin.password"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.UserInfo("admin", strings.TrimSpace(string(admin))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(ctx, "ROLLCALL_EVENTS"); err != nil {
		t.Fatal(err)
	}
	r := readyz(t, httpAddr)
	checks, _ := r["checks"].(map[string]any)
	if r["status"] != "not ready" || !strings.Contains(fmt.Sprint(checks["stream"]), "not found") {
		t.Errorf("readyz with the stream deleted: %v", r)
	}
}
