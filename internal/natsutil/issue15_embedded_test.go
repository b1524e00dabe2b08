package natsutil_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/natsutil"
)

// A server that cannot start says why at once instead of after a 10 s
// wait for a readiness that never comes: a taken address (ListenError,
// with the system's reason) and a fatal error of the server itself (here a
// JetStream store that cannot be created).
func TestIssue15EmbeddedFailsAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		cfg       natsutil.EmbeddedConfig
		listenErr bool
		want      string
	}{
		{"address taken", natsutil.EmbeddedConfig{StoreDir: t.TempDir(), Listen: taken.Addr().String()}, true, "address already in use"},
		{"store is a file", natsutil.EmbeddedConfig{StoreDir: filepath.Join(file, "nats"), Listen: "127.0.0.1:0"}, false, "JetStream"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			s, err := natsutil.StartEmbedded(tt.cfg, nil)
			if err == nil {
				s.Shutdown()
				t.Fatal("started")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("failed after %s: %v", took, err)
			}
			var le *natsutil.ListenError
			if errors.As(err, &le) != tt.listenErr || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q (a ListenError: %v), want %q", err, errors.As(err, &le), tt.want)
			}
		})
	}
}
