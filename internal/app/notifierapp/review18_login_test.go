package notifierapp_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"golang.org/x/crypto/bcrypt"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/natstest"
)

// TestReview18ConfiguredLoginIsEnforcedOnLoopback: the usual way to give
// the console TLS is a reverse proxy on the same machine forwarding to
// 127.0.0.1:9092. An administrator who sets WEB_HTPASSWD_FILE for that
// console expects a login; the console silently ignores the file because
// its address is loopback, and every request the proxy forwards (from
// anyone on the network) is served without one.
func TestReview18ConfiguredLoginIsEnforcedOnLoopback(t *testing.T) {
	srv := natstest.Start(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(f, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"NATS_URL": srv.ClientURL(), "WEB_ADDR": "127.0.0.1:0", "WEB_HTPASSWD_FILE": f}
	c, err := notifierapp.StartConsole(ctx, envconfig.MapLookuper(env), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = c.Wait()
	}()
	resp, err := http.Get(c.URL + "search?q=a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WEB_HTPASSWD_FILE set, console on %s, no credentials: status %d, want 401 (the configured login is ignored)", c.URL, resp.StatusCode)
	}
}
