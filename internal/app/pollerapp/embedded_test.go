package pollerapp_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
)

// runEmbedded runs the poller with its embedded server on a free loopback
// port until the test ends, and returns the server's URL.
func runEmbedded(t *testing.T, dataDir string, extra map[string]string) (string, *syncbuf.Buffer) {
	t.Helper()
	sim := simulator.New(simulator.Config{Users: 3})
	api := httptest.NewServer(sim.Handler())
	t.Cleanup(api.Close)
	addr := testutil.FreeAddr(t)
	env := map[string]string{"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": addr, "HTTP_ADDR": "", "ALLOW_INSECURE_HTTP": "true",
		"VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": simulator.DefaultVPPToken, "VPP_INTERVAL": "100ms"}
	for k, v := range extra {
		env[k] = v
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pollerapp.Run(ctx, envconfig.MapLookuper(env), logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("poller: %v", err)
		}
	})
	url := "nats://" + addr
	testutil.CheckFor(t, 20*time.Second, "the poller's streams", func() error {
		if strings.Contains(logs.String(), "level=ERROR") {
			return errors.New(logs.String())
		}
		pw, _ := os.ReadFile(filepath.Join(dataDir, "auth", "admin.password"))
		nc, err := nats.Connect(url, nats.UserInfo("admin", strings.TrimSpace(string(pw))))
		if err != nil && extra["EMBEDDED_NATS_AUTH"] == "none" {
			nc, err = nats.Connect(url)
		}
		if err != nil {
			return err
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.Stream(ctx, bus.DeadLetterStream)
		return err
	})
	return url, logs
}

// TestEmbeddedServerRequiresUsers is point 2 of issue 14: any local process
// could list the streams, read users' e-mails from the KV, publish a forged
// event and delete ROLLCALL_EVENTS. The embedded server now has the users
// of accounts.conf with their permissions, plus admin, with passwords
// generated into DATA_DIR/auth, readable by its owner only.
func TestEmbeddedServerRequiresUsers(t *testing.T) {
	dataDir := t.TempDir()
	url, logs := runEmbedded(t, dataDir, nil)
	if _, err := nats.Connect(url); err == nil {
		t.Fatal("a client without a user connected to the embedded server")
	}
	if _, err := nats.Connect(url, nats.UserInfo("notifier", "guess")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	fi, err := os.Stat(filepath.Join(dataDir, "auth"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("auth directory: %v %v", fi.Mode(), err)
	}
	pw := map[string]string{}
	for _, u := range pollerapp.EmbeddedUsers {
		f := filepath.Join(dataDir, "auth", u+".password")
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
		b, _ := os.ReadFile(f)
		pw[u] = strings.TrimSpace(string(b))
		if strings.Contains(logs.String(), pw[u]) {
			t.Fatalf("the %s password is in the poller's log", u)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The notifier may not change streams, as in accounts.conf.
	nc, err := nats.Connect(url, nats.UserInfo("notifier", pw["notifier"]), nats.CustomInboxPrefix("_INBOX.notifier"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// A refused request gets no answer: each waits out its own deadline.
	refused, cancelRefused := context.WithTimeout(ctx, 2*time.Second)
	defer cancelRefused()
	if _, err := js.CreateStream(refused, jetstream.StreamConfig{Name: "FORGED", Subjects: []string{"forged.>"}}); err == nil {
		t.Fatal("the notifier user created a stream")
	}
	refused, cancelRefused = context.WithTimeout(ctx, 2*time.Second)
	defer cancelRefused()
	if err := js.DeleteStream(refused, bus.EventsStream); err == nil {
		t.Fatal("the notifier user deleted the event stream")
	}
	// Admin, for the nats CLI, may look at everything.
	ac, err := nats.Connect(url, nats.UserInfo("admin", pw["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	ajs, _ := jetstream.New(ac)
	names := ajs.StreamNames(ctx)
	n := 0
	for range names.Name() {
		n++
	}
	if n < 2 {
		t.Fatalf("admin lists %d streams", n)
	}
	// The passwords are kept: a restart reads them back.
	again, err := pollerapp.EnsureEmbeddedAuth(dataDir)
	if err != nil || again["notifier"] != pw["notifier"] {
		t.Fatalf("passwords changed on a second start: %v", err)
	}
}

// A server beyond loopback without authentication is refused; on
// loopback it runs, with a warning.
func TestEmbeddedServerWithoutAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{"DATA_DIR": t.TempDir(), "EMBEDDED_NATS_LISTEN": "0.0.0.0:0",
		"EMBEDDED_NATS_AUTH": "none", "HTTP_ADDR": "", "VPP_STOKEN": simulator.DefaultVPPToken}), &syncbuf.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "EMBEDDED_NATS_LISTEN") || !strings.Contains(err.Error(), "EMBEDDED_NATS_AUTH") {
		t.Fatalf("non-loopback listen without auth: %v", err)
	}
	url, logs := runEmbedded(t, t.TempDir(), map[string]string{"EMBEDDED_NATS_AUTH": "none"})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("EMBEDDED_NATS_AUTH=none on loopback: %v", err)
	}
	nc.Close()
	if !strings.Contains(logs.String(), "no authentication") {
		t.Fatalf("no warning:\n%s", logs)
	}
}

// A password file others can read is refused, naming the fix.
func TestEmbeddedPasswordFileMode(t *testing.T) {
	dir := t.TempDir()
	if _, err := pollerapp.EnsureEmbeddedAuth(dir); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "auth", "replay.password")
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pollerapp.EnsureEmbeddedAuth(dir); err == nil || !strings.Contains(err.Error(), "chmod go-rwx") {
		t.Fatalf("a world-readable password file: %v", err)
	}
}
