package notifierapp

import (
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// TestReview15OverrideForBlankURLIgnored: checkOverrides compares n with
// len(urls), blank entries included, while buildRoutes skips blank
// entries. A trailing comma in WEBHOOK_URL (or in WEBHOOK_URL_FILE, "a,b,\n")
// makes a WEBHOOK_<n>_SECRET/TYPES for a URL that does not exist pass, and
// it applies to nothing: the operator believes webhook 2 has its own secret
// and filter. The check this replaced counted non-blank URLs and refused it
// (issue 14 point 7: "ignored silently").
func TestReview15OverrideForBlankURLIgnored(t *testing.T) {
	sec := "whsec_" + base64.StdEncoding.EncodeToString([]byte("tenant-2-secret-0123456789"))
	f := filepath.Join(t.TempDir(), "urls")
	if err := os.WriteFile(f, []byte("https://hooks.example.com/a,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"WEBHOOK_URL":      {"WEBHOOK_URL": "https://hooks.example.com/a,"},
		"WEBHOOK_URL_FILE": {"WEBHOOK_URL_FILE": f},
	} {
		t.Run(name, func(t *testing.T) {
			env["WEBHOOK_2_SECRET"], env["WEBHOOK_2_TYPES"], env["CONSOLE"] = sec, "user.retired", "false"
			cfg, err := Load(context.Background(), envconfig.MapLookuper(env))
			var routes int
			if err == nil {
				r, e := buildRoutes(cfg, io.Discard)
				routes, err = len(r), e
			}
			if err == nil {
				t.Fatalf("WEBHOOK_2_SECRET and WEBHOOK_2_TYPES with one webhook URL (%d route) were accepted and apply to nothing", routes)
			}
			if !strings.Contains(err.Error(), "WEBHOOK_2_") {
				t.Errorf("error does not name the variable: %v", err)
			}
		})
	}
}
