package pollerapp

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	natsconf "github.com/rollcall/rollcall/deployments/nats"
)

// Embedded server authentication (EMBEDDED_NATS_AUTH).
const (
	// AuthGenerate: the embedded server has the users of
	// deployments/nats/accounts.conf — poller, notifier and replay, with
	// their permissions — and admin (every permission, for the nats CLI),
	// with passwords generated once into DATA_DIR/auth/<user>.password
	// (mode 0600; the directory 0700).
	AuthGenerate = "generate"
	// AuthNone: no authentication; allowed on a loopback address only.
	AuthNone = "none"
)

// EmbeddedUsers are the users AuthGenerate creates.
var EmbeddedUsers = []string{"poller", "notifier", "replay", "admin"}

// AuthDir is where AuthGenerate keeps the passwords, below DATA_DIR.
const AuthDir = "auth"

// checkEmbeddedListen refuses a server open beyond this machine without
// authentication, and warns about one open to every local process.
func checkEmbeddedListen(cfg Config, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(cfg.EmbeddedListen)
	if err != nil {
		return fmt.Errorf("configuration: EMBEDDED_NATS_LISTEN %q: %w", cfg.EmbeddedListen, err)
	}
	if (cfg.EmbeddedTLSCert == "") != (cfg.EmbeddedTLSKey == "") {
		return fmt.Errorf("configuration: EMBEDDED_NATS_TLS_CERT and EMBEDDED_NATS_TLS_KEY: set both or neither")
	}
	switch cfg.EmbeddedAuth {
	case AuthGenerate:
		if !loopback(host) && cfg.EmbeddedTLSCert == "" {
			return fmt.Errorf("configuration: EMBEDDED_NATS_LISTEN %s is not a loopback address and the embedded server has no TLS: "+
				"the users' passwords and every user's record would cross the network in clear text; set EMBEDDED_NATS_TLS_CERT and "+
				"EMBEDDED_NATS_TLS_KEY (a server certificate for this host, e.g. from deployments/nats/gen-certs.sh) or listen on 127.0.0.1",
				cfg.EmbeddedListen)
		}
		return nil
	case AuthNone:
		if !loopback(host) {
			return fmt.Errorf("configuration: EMBEDDED_NATS_LISTEN %s is not a loopback address and EMBEDDED_NATS_AUTH is none: "+
				"anyone who can reach it could read every user's record and forge or delete events; set EMBEDDED_NATS_AUTH=generate "+
				"(users with passwords in DATA_DIR/auth) or listen on 127.0.0.1", cfg.EmbeddedListen)
		}
		log.Warn("the embedded NATS server has no authentication (EMBEDDED_NATS_AUTH=none): every process on this machine can read and change rollcall's data",
			"listen", cfg.EmbeddedListen)
		return nil
	}
	return fmt.Errorf("configuration: EMBEDDED_NATS_AUTH %q: want generate or none", cfg.EmbeddedAuth)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// EnsureEmbeddedAuth makes sure dataDir/auth holds a password file for
// each of EmbeddedUsers, creating what is missing, and returns the
// passwords. A file or directory that other users may read is refused:
// it would hand them the server.
func EnsureEmbeddedAuth(dataDir string) (map[string]string, error) {
	dir := filepath.Join(dataDir, AuthDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("DATA_DIR: create %s: %w", dir, err)
	}
	if err := private(dir, 0o077); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, u := range EmbeddedUsers {
		f := filepath.Join(dir, u+".password")
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			pw := randomPassword()
			if err := writeNew(f, pw); err != nil {
				return nil, err
			}
			b, err = []byte(pw), nil
		}
		if err != nil {
			return nil, fmt.Errorf("DATA_DIR: read %s: %w", f, err)
		}
		if err := private(f, 0o077); err != nil {
			return nil, err
		}
		pw := strings.TrimSpace(string(b))
		if pw == "" || strings.ContainsAny(pw, "\"\\\n") {
			return nil, fmt.Errorf("DATA_DIR: %s is empty or not a generated password; delete it and restart to generate a new one", f)
		}
		out[u] = pw
	}
	return out, nil
}

// writeNew creates f with mode 0600, failing if it exists (another
// process generated it meanwhile: the caller reads that one next time).
func writeNew(f, content string) error {
	h, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("DATA_DIR: create %s: %w", f, err)
	}
	if _, err := h.WriteString(content + "\n"); err != nil {
		h.Close()
		return fmt.Errorf("DATA_DIR: write %s: %w", f, err)
	}
	return h.Close()
}

// private refuses a path whose mode grants any of the bits in mask.
func private(path string, mask fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	if fi.Mode().Perm()&mask != 0 {
		return fmt.Errorf("DATA_DIR: %s has mode %s, so other users can read it; run chmod go-rwx %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

func randomPassword() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// embeddedAuthConfig is the embedded server's users, in NATS configuration
// text: accounts.conf's permission sets and an authorization block in the
// server's global account (where its JetStream data has always been).
func embeddedAuthConfig(pw map[string]string) string {
	var b strings.Builder
	b.WriteString(natsconf.Permissions())
	b.WriteString("authorization {\n  users: [\n")
	for _, u := range EmbeddedUsers {
		perm := ""
		if u != "admin" {
			perm = ", permissions: $" + strings.ToUpper(u) + "_PERMISSIONS"
		}
		fmt.Fprintf(&b, "    { user: %s, password: %q%s }\n", u, pw[u], perm)
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}
