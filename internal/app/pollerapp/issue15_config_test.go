package pollerapp_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 15 point 5: a configuration error says its cause once, naming the
// variable as the operator wrote it (SOURCES prefix included) — it read
// "configuration: source veeam: veeam: source veeam: base url must be …".
func TestIssue15ConfigErrorsSayItOnce(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	veeam := func(kv ...string) map[string]string {
		env := map[string]string{"VEEAM_BASE_URL": "https://spc.example.com:1280", "VEEAM_TOKEN": "key"}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	tests := []struct {
		name     string
		env      map[string]string
		variable string // named in the message
		value    string // quoted in the message, when it may be
	}{
		{"relative veeam URL", veeam("VEEAM_BASE_URL", "spc.example.com"), "VEEAM_BASE_URL", `"spc.example.com"`},
		{"credentials in the veeam URL", veeam("VEEAM_BASE_URL", "https://admin:hunter2@spc.example.com"), "VEEAM_BASE_URL", ""},
		{"veeam token and password", veeam("VEEAM_USERNAME", "u", "VEEAM_PASSWORD", "p"), "VEEAM_TOKEN", ""},
		{"veeam without credentials", veeam("VEEAM_TOKEN", ""), "VEEAM_TOKEN", ""},
		{"veeam CA file missing", veeam("VEEAM_CA_FILE", missing), "VEEAM_CA_FILE", ""},
		{"veeam CA file without a certificate", veeam("VEEAM_CA_FILE", garbage), "VEEAM_CA_FILE", `"` + garbage + `"`},
		{"veeam CA file and skipped verification", veeam("VEEAM_CA_FILE", garbage, "VEEAM_INSECURE_SKIP_VERIFY", "true"), "VEEAM_CA_FILE", ""},
		{"veeam token file missing", veeam("VEEAM_TOKEN", "", "VEEAM_TOKEN_FILE", missing), "VEEAM_TOKEN_FILE", ""},
		{"veeam interval", veeam("VEEAM_INTERVAL", "often"), "VEEAM_INTERVAL", ""},
		{"veeam page size", veeam("VEEAM_PAGE_SIZE", "0"), "VEEAM_PAGE_SIZE", ""},
		{"vpp base URL", map[string]string{"VPP_STOKEN": "x", "VPP_BASE_URL": "ftp://vpp.example"}, "VPP_BASE_URL", `"ftp://vpp.example"`},
		{"vpp service configuration URL", map[string]string{"VPP_STOKEN": "x", "VPP_SERVICE_CONFIG_URL": "::"}, "VPP_SERVICE_CONFIG_URL", `"::"`},
		{"vpp token file missing", map[string]string{"VPP_STOKEN_FILE": missing}, "VPP_STOKEN_FILE", ""},
		{"named veeam source URL", map[string]string{"SOURCES": "eu:veeam", "EU_VEEAM_BASE_URL": "spc", "EU_VEEAM_TOKEN": "key"}, "EU_VEEAM_BASE_URL", `"spc"`},
		{"named veeam source CA file", map[string]string{"SOURCES": "eu:veeam", "EU_VEEAM_BASE_URL": "https://spc.example.com", "EU_VEEAM_TOKEN": "key",
			"EU_VEEAM_CA_FILE": missing}, "EU_VEEAM_CA_FILE", ""},
		{"named veeam source interval", map[string]string{"SOURCES": "eu:veeam", "EU_VEEAM_BASE_URL": "https://spc.example.com", "EU_VEEAM_TOKEN": "key",
			"EU_VEEAM_INTERVAL": "often"}, "EU_VEEAM_INTERVAL", ""},
		{"named vpp source URL", map[string]string{"SOURCES": "school:vpp", "SCHOOL_VPP_STOKEN": "x", "SCHOOL_VPP_BASE_URL": "ftp://vpp.example"},
			"SCHOOL_VPP_BASE_URL", `"ftp://vpp.example"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"DATA_DIR": t.TempDir(), "EMBEDDED_NATS_LISTEN": "127.0.0.1:0", "HTTP_ADDR": ""}
			for k, v := range tt.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := pollerapp.Run(ctx, envconfig.MapLookuper(env), &syncbuf.Buffer{})
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "configuration: ") || strings.Count(msg, "configuration") != 1 {
				t.Errorf("%q does not start with one \"configuration: \"", msg)
			}
			if !strings.Contains(msg, tt.variable) {
				t.Errorf("%q does not name %s", msg, tt.variable)
			}
			if tt.value != "" && !strings.Contains(msg, tt.variable+" "+tt.value) {
				t.Errorf("%q does not quote the value after the variable: %s %s", msg, tt.variable, tt.value)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("%q repeats a password", msg)
			}
			if w := repeatedPrefix(msg); w != "" {
				t.Errorf("%q says %q twice", msg, w)
			}
		})
	}
}

// repeatedPrefix returns the first word that begins two of the message's
// ": "-separated parts ("source" in "source veeam: veeam: source veeam: …",
// "veeam" in "veeam: veeam api: …"), or "".
func repeatedPrefix(msg string) string {
	seen := map[string]bool{}
	for _, part := range strings.Split(msg, ": ") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		w := strings.ToLower(strings.Trim(f[0], `"'(),;`))
		if seen[w] {
			return w
		}
		seen[w] = true
	}
	return ""
}
