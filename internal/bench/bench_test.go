package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestQuickRun runs every scenario at 10k users, once each, with the
// simulator in process (about 5 s, 20 s under the race detector): it checks
// that each scenario produces its figures and that runs over an unchanged
// directory write nothing to NATS. Timings are logged, never asserted.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the benchmark's quick run takes a minute; skipped with -short")
	}
	const users = 10_000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := Run(ctx, Config{Sizes: []int{users}, Quick: true, Events: 2_000, TempDir: t.TempDir(), Progress: &progress})
	var table strings.Builder
	rep.Print(&table)
	t.Log("\n" + table.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	prefixes := map[string]string{
		ScenarioRun: "1 ", ScenarioSteady: "2 ", ScenarioPublish: "3 ", ScenarioDeliver: "4 ", ScenarioStartup: "5 ", ScenarioMemory: "6 ", ScenarioNotice: "7 ", ScenarioSearch: "8 ",
	}
	for _, s := range Scenarios {
		found := false
		for _, r := range rep.Rows {
			if strings.HasPrefix(r.Scenario, prefixes[s]) {
				found = true
				if r.Figure == "" || r.Result == "" {
					t.Errorf("scenario %s: row %q has no figure or result", s, r.Scenario)
				}
			}
		}
		if !found {
			t.Errorf("scenario %s produced no figures", s)
		}
	}
	writes := 0
	for _, r := range rep.Rows {
		if strings.Contains(r.Scenario, "NATS writes") {
			writes++
			if r.Result != "pass" {
				t.Errorf("%s at %s: %s (%s)", r.Scenario, r.Size, r.Figure, r.Note)
			}
		}
	}
	if writes == 0 {
		t.Error("no zero-writes check ran")
	}
	if f := rep.Failed(); len(f) > 0 {
		t.Errorf("failed checks: %+v", f)
	}
}
