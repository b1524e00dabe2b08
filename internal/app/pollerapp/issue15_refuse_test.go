package pollerapp_test

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
)

// issue15Env is a poller against a fake Veeam API with an embedded server.
func issue15Env(t *testing.T, dataDir, natsAddr, httpAddr string) map[string]string {
	t.Helper()
	api := httptest.NewServer(veeamtest.NewServer("key", veeamtest.FixtureUsers()...))
	t.Cleanup(api.Close)
	return map[string]string{
		"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": httpAddr,
		"ALLOW_INSECURE_HTTP": "true", "VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": "key", "VEEAM_INTERVAL": "1h",
	}
}

// runRefused runs a poller that must refuse to start, at once.
func runRefused(t *testing.T, env map[string]string) (error, string) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := pollerapp.Run(ctx, envconfig.MapLookuper(env), logs)
	if err == nil {
		t.Fatalf("the poller started:\n%s", logs)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("refused after %s, not at once: %v", took, err)
	}
	return err, logs.String()
}

// Issue 15 point 5: a taken EMBEDDED_NATS_LISTEN is reported at once (it
// took 10 s and a guess), naming the variable, the address and the cause.
func TestIssue15EmbeddedPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err, logs := runRefused(t, issue15Env(t, t.TempDir(), addr, ""))
	msg := err.Error()
	for _, want := range []string{"EMBEDDED_NATS_LISTEN", addr, "address already in use"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Count(msg, addr) != 1 || strings.Contains(msg, "not ready") {
		t.Errorf("error %q repeats the address or guesses", msg)
	}
	if strings.Contains(logs, "started") {
		t.Errorf("something was reported started:\n%s", logs)
	}
}

// Issue 15 point 5: a taken HTTP_ADDR is the first and only thing the
// poller says: no "starting", "started", "stopped" or "context canceled".
func TestIssue15HTTPAddrTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err, logs := runRefused(t, issue15Env(t, t.TempDir(), "127.0.0.1:0", addr))
	msg := err.Error()
	for _, want := range []string{"HTTP_ADDR", addr, "address already in use"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "context canceled") {
		t.Errorf("error %q reports a cancellation", msg)
	}
	if logs != "" {
		t.Errorf("logged before the cause:\n%s", logs)
	}
}

// Issue 15 point 5: a second poller on the DATA_DIR of a running one (it
// started a second JetStream server on the same store) is refused at
// once, naming DATA_DIR and the process holding it; once the first stops,
// the directory is free again.
func TestIssue15DataDirInUse(t *testing.T) {
	dir := t.TempDir()
	first := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(issue15Env(t, dir, "127.0.0.1:0", "")), first)
	}()
	waitFor(t, first, "poller started", done)

	err, logs := runRefused(t, issue15Env(t, dir, testutil.FreeAddr(t), ""))
	abs, _ := filepath.Abs(dir)
	msg := err.Error()
	// This process holds the lock: the first poller runs in it.
	for _, want := range []string{"DATA_DIR", abs, "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(logs, "started") {
		t.Errorf("the refused poller started something:\n%s", logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first poller: %v", err)
	}

	again := &syncbuf.Buffer{}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done = make(chan error, 1)
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(issue15Env(t, dir, "127.0.0.1:0", "")), again)
	}()
	waitFor(t, again, "poller started", done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("poller after the first stopped: %v", err)
	}
}

func waitFor(t *testing.T, logs *syncbuf.Buffer, what string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), what) {
		select {
		case err := <-done:
			t.Fatalf("poller ended: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q:\n%s", what, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
