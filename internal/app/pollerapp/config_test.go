package pollerapp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 14 point 10: an http:// source URL would send the sToken, API key
// or password in clear text; the poller refuses it at start unless
// ALLOW_INSECURE_HTTP=true says it is meant (the simulator, tests).
func TestInsecureSourceURLs(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // in the error; nil: accepted
	}{
		{"veeam over http", map[string]string{"VEEAM_BASE_URL": "http://spc.example.com:1280", "VEEAM_TOKEN": "t"},
			[]string{"VEEAM_BASE_URL", "http://", "API key or password", "https://", "ALLOW_INSECURE_HTTP=true"}},
		{"vpp base over http", map[string]string{"VPP_STOKEN": "x", "VPP_BASE_URL": "http://vpp.example/mdm"},
			[]string{"VPP_BASE_URL", "sToken", "ALLOW_INSECURE_HTTP=true"}},
		{"vpp service configuration over http", map[string]string{"VPP_STOKEN": "x", "VPP_SERVICE_CONFIG_URL": "http://vpp.example/mdm/VPPServiceConfigSrv"},
			[]string{"VPP_SERVICE_CONFIG_URL", "sToken", "ALLOW_INSECURE_HTTP=true"}},
		{"scheme in upper case, spaces around", map[string]string{"VEEAM_BASE_URL": " HTTP://spc.example.com ", "VEEAM_TOKEN": "t"},
			[]string{"VEEAM_BASE_URL", "ALLOW_INSECURE_HTTP=true"}},
		{"loopback is not exempt", map[string]string{"VEEAM_BASE_URL": "http://127.0.0.1:8080", "VEEAM_TOKEN": "t"},
			[]string{"VEEAM_BASE_URL", "ALLOW_INSECURE_HTTP=true"}},
		{"named veeam source", map[string]string{"SOURCES": "eu:veeam", "EU_VEEAM_BASE_URL": "http://spc.example.com", "EU_VEEAM_TOKEN": "t"},
			[]string{"EU_VEEAM_BASE_URL", "ALLOW_INSECURE_HTTP=true"}},
		{"named vpp source", map[string]string{"SOURCES": "school:vpp", "SCHOOL_VPP_STOKEN": "x", "SCHOOL_VPP_SERVICE_CONFIG_URL": "http://vpp.example/c"},
			[]string{"SCHOOL_VPP_SERVICE_CONFIG_URL", "ALLOW_INSECURE_HTTP=true"}},
		{"credentials in the URL are not repeated", map[string]string{"VEEAM_BASE_URL": "http://admin:hunter2@spc.example.com", "VEEAM_TOKEN": "t"},
			[]string{"VEEAM_BASE_URL"}},
		{"explicitly false", map[string]string{"ALLOW_INSECURE_HTTP": "false", "VEEAM_BASE_URL": "http://spc.example.com", "VEEAM_TOKEN": "t"},
			[]string{"VEEAM_BASE_URL"}},
		{"bad value", map[string]string{"ALLOW_INSECURE_HTTP": "sometimes", "VEEAM_BASE_URL": "http://spc.example.com", "VEEAM_TOKEN": "t"},
			[]string{"ALLOW_INSECURE_HTTP"}},
		{"https", map[string]string{"VEEAM_BASE_URL": "https://spc.example.com:1280", "VEEAM_TOKEN": "t", "VPP_STOKEN": "x",
			"VPP_SERVICE_CONFIG_URL": "https://vpp.itunes.apple.com/mdm/VPPServiceConfigSrv"}, nil},
		{"vpp defaults", map[string]string{"VPP_STOKEN": "x"}, nil},
		{"allowed", map[string]string{"ALLOW_INSECURE_HTTP": "true", "VEEAM_BASE_URL": "http://127.0.0.1:8080", "VEEAM_TOKEN": "t",
			"VPP_STOKEN": "x", "VPP_BASE_URL": "http://127.0.0.1:8080/mdm", "VPP_SERVICE_CONFIG_URL": "http://127.0.0.1:8080/mdm/VPPServiceConfigSrv"}, nil},
		{"allowed for named sources", map[string]string{"ALLOW_INSECURE_HTTP": "true", "SOURCES": "eu:veeam",
			"EU_VEEAM_BASE_URL": "http://spc.example.com", "EU_VEEAM_TOKEN": "t"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := pollerapp.Load(context.Background(), envconfig.MapLookuper(tt.env))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "spc.example.com") {
				t.Errorf("error %q repeats the URL", err)
			}
		})
	}
}

// With ALLOW_INSECURE_HTTP=true the poller starts against an http:// fake
// and says, once at start, which source sends its credentials in clear
// text; an https source is not named. Across a network that is a warning;
// to this machine (the simulator, this fake) it is said at info level
// (issue 15 point 6: the demo warns of nothing).
func TestInsecureSourceURLWarning(t *testing.T) {
	api := httptest.NewServer(veeamtest.NewServer("key", veeamtest.FixtureUsers()...))
	defer api.Close()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": t.TempDir(), "EMBEDDED_NATS_LISTEN": "127.0.0.1:0", "HTTP_ADDR": "", "LOG_FORMAT": "json",
			"ALLOW_INSECURE_HTTP": "true", "SOURCES": "eu:veeam,us:veeam,far:veeam",
			// An address beyond this machine (TEST-NET-1), never reached
			// within the test either.
			"FAR_VEEAM_BASE_URL": "http://192.0.2.1:1", "FAR_VEEAM_TOKEN": "key", "FAR_VEEAM_INTERVAL": "1h",
			"EU_VEEAM_BASE_URL": api.URL, "EU_VEEAM_TOKEN": "key", "EU_VEEAM_INTERVAL": "1h",
			// Never reached within the test: the source's first run fails
			// at leisure.
			"US_VEEAM_BASE_URL": "https://127.0.0.1:1", "US_VEEAM_TOKEN": "key", "US_VEEAM_INTERVAL": "1h",
		}), logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "poller started") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("poller did not start: %v\n%s", <-done, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var warned []string
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if msg, _ := rec["msg"].(string); strings.Contains(msg, "ALLOW_INSECURE_HTTP") {
			warned = append(warned, fmt.Sprint(rec["level"], " ", rec["source"], " ", rec["variable"]))
		}
	}
	slices.Sort(warned)
	if strings.Join(warned, ",") != "INFO eu EU_VEEAM_BASE_URL,WARN far FAR_VEEAM_BASE_URL" {
		t.Fatalf("said %v, want an info line for eu EU_VEEAM_BASE_URL (loopback) and a warning for far FAR_VEEAM_BASE_URL\n%s", warned, logs)
	}
}
