package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 15 point 9: the variables serve prints for a poller, copied as
// they are, give events within seconds: they carry short intervals (the
// defaults poll every 5 and 15 minutes, so a copied command used to stay
// silent for that long after its seed).
func TestIssue15ServePrintsAPollerThatReportsWithinSeconds(t *testing.T) {
	simErr := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	simDone := make(chan error, 1)
	go func() {
		simDone <- run(ctx, []string{"serve", "-addr", "127.0.0.1:0", "-churn", "300ms"}, &syncbuf.Buffer{}, simErr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(simErr.String(), " go run ./cmd/poller\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no poller command printed:\n%s", simErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The command: lines ending in a backslash continue; VAR=value words,
	// then the program.
	_, cmd, _ := strings.Cut(simErr.String(), ":\n")
	cmd, _, _ = strings.Cut(cmd, " go run ./cmd/poller\n")
	env := map[string]string{}
	for _, w := range strings.Fields(strings.ReplaceAll(cmd, "\\\n", " ")) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			t.Fatalf("%q in the printed command is not VAR=value:\n%s", w, simErr)
		}
		env[k] = v
	}
	for _, k := range []string{"VPP_BASE_URL", "VPP_STOKEN", "VPP_INTERVAL", "VEEAM_BASE_URL", "VEEAM_TOKEN", "VEEAM_INTERVAL", "ALLOW_INSECURE_HTTP"} {
		if env[k] == "" {
			t.Errorf("%s not printed:\n%s", k, simErr)
		}
	}
	// What the test adds is only where this poller keeps its data and
	// listens, so that it runs beside others.
	env["DATA_DIR"], env["EMBEDDED_NATS_LISTEN"], env["HTTP_ADDR"], env["LOG_FORMAT"] = t.TempDir(), "127.0.0.1:0", "", "json"
	logs := &syncbuf.Buffer{}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- pollerapp.Run(pctx, envconfig.MapLookuper(env), logs) }()
	published := map[string]bool{} // sources with events
	deadline = time.Now().Add(20 * time.Second)
	for len(published) < 2 {
		select {
		case err := <-done:
			t.Fatalf("poller ended: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no events from both sources within 20s of the poller's start:\n%s", logs)
		}
		for line := range strings.Lines(logs.String()) {
			var rec struct {
				Source string `json:"source"`
				Events int    `json:"events"`
				Next   string `json:"next_run"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Next != "" && rec.Events > 0 {
				published[rec.Source] = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-simDone; err != nil {
		t.Fatal(err)
	}
}
