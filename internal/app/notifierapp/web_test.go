package notifierapp_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
)

// TestConsoleRefusesOpenAddressWithoutLogin: a console beyond loopback
// with no way to log in, or a half-configured proxy login, never starts;
// the error names the variables.
func TestConsoleRefusesOpenAddressWithoutLogin(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(plain, []byte("alice:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WEB_ADDR": "0.0.0.0:0"}, "WEB_HTPASSWD_FILE"},
		{map[string]string{"WEB_ADDR": "10.0.0.1:9092", "WEB_PROXY_USER_HEADER": "X-Forwarded-User"}, "go together"},
		{map[string]string{"WEB_ADDR": "0.0.0.0:0", "WEB_TRUSTED_PROXIES": "10.0.0.0/8"}, "go together"},
		{map[string]string{"WEB_ADDR": "0.0.0.0:0", "WEB_PROXY_USER_HEADER": "X-User", "WEB_TRUSTED_PROXIES": "proxy.example"}, "WEB_TRUSTED_PROXIES"},
		{map[string]string{"WEB_ADDR": "0.0.0.0:0", "WEB_HTPASSWD_FILE": plain}, "not a bcrypt hash"},
		{map[string]string{"WEB_REFRESH": "0s"}, "WEB_REFRESH"},
	} {
		c.env["NATS_URL"] = "nats://127.0.0.1:1"
		_, err := notifierapp.StartConsole(context.Background(), envconfig.MapLookuper(c.env), nil, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one naming %q", c.env, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error quotes a password: %v", err)
		}
	}
}
