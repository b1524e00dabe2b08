// Package deployments holds deployment files; its test checks that each
// configuration file is valid.
package deployments

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNATSConfig parses the server configuration as nats-server -t would and
// starts a server from it, with the store and ports moved aside.
func TestNATSConfig(t *testing.T) {
	files, _ := filepath.Glob("nats/*.conf")
	if len(files) == 0 {
		t.Fatal("no NATS configuration files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			opts, err := server.ProcessConfigFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !opts.JetStream {
				t.Fatal("JetStream is not enabled")
			}
			opts.StoreDir, opts.Port, opts.HTTPPort, opts.NoLog, opts.NoSigs = t.TempDir(), -1, 0, true, true
			s, err := server.NewServer(opts)
			if err != nil {
				t.Fatal(err)
			}
			go s.Start()
			defer s.Shutdown()
			if !s.ReadyForConnections(10e9) {
				t.Fatal("server from config not ready")
			}
		})
	}
	if _, err := os.Stat("docker/Dockerfile"); err != nil {
		t.Fatal(err)
	}
}
