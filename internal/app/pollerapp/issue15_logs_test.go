package pollerapp_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 15 point 6: a poller that is doing well says, per run, one info
// line: what happened (source, kind of run, users seen, events published,
// duration) and when the next run is due; the first run says it seeded the
// users silently. Nothing else about a run reaches the info log, and
// nothing is a warning or an error: not the simulator's loopback http://
// URL, not a normal stop, not the lease this replica gives up at shutdown.
func TestIssue15QuietRunLog(t *testing.T) {
	const token = "issue15-veeam-key"
	api := veeamtest.NewServer(token, veeamtest.FixtureUsers()...)
	srv := httptest.NewServer(api)
	defer srv.Close()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": t.TempDir(), "EMBEDDED_NATS_LISTEN": "127.0.0.1:0", "HTTP_ADDR": "", "LOG_FORMAT": "json", "LOG_LEVEL": "debug",
			"ALLOW_INSECURE_HTTP": "true", "VEEAM_BASE_URL": srv.URL, "VEEAM_TOKEN": token, "VEEAM_INTERVAL": "200ms",
		}), logs)
	}()
	type line struct {
		Time    time.Time `json:"time"`
		Level   string    `json:"level"`
		Msg     string    `json:"msg"`
		Run     string    `json:"run"`
		Kind    string    `json:"kind"`
		Users   *int      `json:"users"`
		Events  *int      `json:"events"`
		Dur     string    `json:"duration"`
		NextRun string    `json:"next_run"`
		NextIn  string    `json:"next_in"`
		raw     string
	}
	parse := func() []line {
		var out []line
		for l := range strings.Lines(logs.String()) {
			var rec line
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("not a JSON log line: %v\n%s", err, l)
			}
			rec.raw = strings.TrimSpace(l)
			out = append(out, rec)
		}
		return out
	}
	isRunLine := func(l line) bool { return l.Level == "INFO" && l.NextRun != "" }
	runLines := func() int {
		n := 0
		for _, l := range parse() {
			if isRunLine(l) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for changed := false; runLines() < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 4 run lines:\n%s", logs)
		}
		if !changed && runLines() >= 2 {
			u := veeamtest.FixtureUsers()[0]
			u.Role = "companyAdministrator"
			api.Put(u)
			changed = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a requested stop returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the poller did not stop")
	}

	all := parse()
	finished := map[string]bool{} // runs that completed (their debug details)
	for _, l := range all {
		if l.Msg == "run details" {
			finished[l.Run] = true
		}
	}
	info := map[string][]line{} // run id → its info lines
	var runs []line
	for _, l := range all {
		switch {
		case l.Level == "WARN" || l.Level == "ERROR":
			t.Errorf("a poller doing well logged %s: %s", l.Level, l.raw)
		case strings.Contains(l.Msg, "another replica"):
			t.Errorf("the replica's own stop reported as another replica's lease: %s", l.raw)
		case l.Level == "INFO" && l.Run != "":
			info[l.Run] = append(info[l.Run], l)
		}
		if isRunLine(l) {
			runs = append(runs, l)
		}
	}
	if len(runs) < 4 || len(runs) != len(finished) {
		t.Fatalf("%d run lines for %d completed runs:\n%s", len(runs), len(finished), logs)
	}
	total := 0
	for i, r := range runs {
		if !finished[r.Run] {
			t.Errorf("run line for a run that did not complete: %s", r.raw)
		}
		// One info line per run, except that the first run also says it
		// loaded the (empty) state: once per start, not per run.
		for _, l := range info[r.Run] {
			if l.raw != r.raw && !(i == 0 && strings.HasPrefix(l.Msg, "loaded the source's users")) {
				t.Errorf("more than one info line for run %s: %s", r.Run, l.raw)
			}
		}
		next, err := time.Parse(time.RFC3339, r.NextRun)
		if err != nil || next.Before(r.Time.Add(-time.Second)) || next.After(r.Time.Add(2*time.Second)) {
			t.Errorf("next_run %q does not follow the run's time %s by its 200ms interval (%v): %s", r.NextRun, r.Time, err, r.raw)
		}
		if r.NextIn == "" || r.Dur == "" || r.Users == nil || r.Events == nil || r.Kind == "" {
			t.Errorf("run line without next_in, duration, users, events or kind: %s", r.raw)
		}
		if r.Users != nil && *r.Users != 3 {
			t.Errorf("users = %d, want the fixture's 3: %s", *r.Users, r.raw)
		}
		if i == 0 {
			if r.Kind != "seed" || !strings.Contains(r.Msg, "seeded") || !strings.Contains(r.Msg, "silently") ||
				!strings.Contains(r.Msg, "EMIT_INITIAL") || !strings.Contains(r.Msg, "next run") || *r.Events != 0 {
				t.Errorf("first run line does not say it seeded the users silently and that changes come from the next run: %s", r.raw)
			}
		} else {
			if r.Kind != "full" || strings.Contains(r.Msg, "seed") {
				t.Errorf("run %d is not a plain full run: %s", i+1, r.raw)
			}
			total += *r.Events
		}
	}
	if total != 1 {
		t.Errorf("the role change gave %d events in the run lines, want 1:\n%s", total, logs)
	}
}
