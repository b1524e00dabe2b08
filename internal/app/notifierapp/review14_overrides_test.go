package notifierapp

import (
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// TestReview14OverrideForMissingURLWithURLFile: issue 14 point 7 — a
// WEBHOOK_<n>_SECRET for a URL that does not exist must not be ignored
// silently. checkWebhooks skips the check when WEBHOOK_URL_FILE is used
// ("the file's URLs are counted when it is read"), but buildRoutes never
// counts them: with one URL in the file, WEBHOOK_3_SECRET and
// WEBHOOK_3_TYPES start the notifier and apply to nothing.
func TestReview14OverrideForMissingURLWithURLFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "urls")
	if err := os.WriteFile(f, []byte("https://hooks.example.com/a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec := "whsec_" + base64.StdEncoding.EncodeToString([]byte("tenant-3-secret-0123456789"))
	cfg, err := Load(context.Background(), envconfig.MapLookuper(map[string]string{
		"WEBHOOK_URL_FILE": f, "WEBHOOK_3_SECRET": sec, "WEBHOOK_3_TYPES": "user.retired", "CONSOLE": "false",
	}))
	if err == nil {
		_, err = buildRoutes(cfg, io.Discard)
	}
	if err == nil {
		t.Fatal("WEBHOOK_3_SECRET with one URL in WEBHOOK_URL_FILE was accepted and is ignored silently")
	}
	if !strings.Contains(err.Error(), "WEBHOOK_3_") {
		t.Errorf("error does not name the variable: %v", err)
	}
}

// TestReview14OverrideBeyond32Ignored: Load reads WEBHOOK_<n>_ only for n ≤
// 32 (maxWebhooks) but WEBHOOK_URL may list more. An MSP with 33 customer
// webhooks gives the 33rd its own secret and WEBHOOK_33_TYPES; both are
// ignored silently, so customer 33 receives every event type, signed with
// the shared secret every other customer may hold (so any of them can
// forge deliveries to it).
func TestReview14OverrideBeyond32Ignored(t *testing.T) {
	var urls []string
	for i := 1; i <= 33; i++ {
		urls = append(urls, "https://hooks.example.com/"+string(rune('a'+i%26))+"/"+strings.Repeat("x", i))
	}
	shared := "whsec_" + base64.StdEncoding.EncodeToString([]byte("shared-secret-0123456789"))
	own := "whsec_" + base64.StdEncoding.EncodeToString([]byte("tenant-33-secret-0123456789"))
	cfg, err := Load(context.Background(), envconfig.MapLookuper(map[string]string{
		"WEBHOOK_URL": strings.Join(urls, ","), "WEBHOOK_SECRET": shared,
		"WEBHOOK_33_SECRET": own, "WEBHOOK_33_TYPES": "user.retired", "CONSOLE": "false",
	}))
	if err != nil {
		t.Logf("refused at Load (acceptable): %v", err)
		return
	}
	routes, err := buildRoutes(cfg, io.Discard)
	if err != nil {
		t.Logf("refused at buildRoutes (acceptable): %v", err)
		return
	}
	if len(routes) != 33 {
		t.Fatalf("%d routes", len(routes))
	}
	if !slices.Equal(routes[32].Types, []string{"user.retired"}) {
		t.Errorf("WEBHOOK_33_TYPES=user.retired ignored: webhook-33 gets types %v (nil = every event)", routes[32].Types)
	}
	if _, ok := cfg.WebhookOverrides[33]; !ok {
		t.Errorf("WEBHOOK_33_SECRET ignored: webhook-33 is signed with the shared WEBHOOK_SECRET")
	}
}
