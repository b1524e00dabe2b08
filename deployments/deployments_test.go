// Package deployments holds deployment files; its test checks that each
// configuration file is valid.
package deployments

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNATSConfig checks every NATS configuration file the way its
// natsConfigChecks entry says: parsed as nats-server -t would, and started.
func TestNATSConfig(t *testing.T) {
	files, _ := filepath.Glob("nats/*")
	if len(files) == 0 {
		t.Fatal("no NATS configuration files")
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".go") {
			continue // Go source (the embedded server's permissions): built and tested as a package
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			check, ok := natsConfigChecks[filepath.Base(f)]
			if !ok {
				t.Fatalf("no check for %s: add one to natsConfigChecks", f)
			}
			check(t, f)
		})
	}
	if _, err := os.Stat("docker/Dockerfile"); err != nil {
		t.Fatal(err)
	}
}
