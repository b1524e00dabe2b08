package poller_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/replay"
)

// TestReview15CleanOldBaselineKeepsItsTime: a baseline an earlier release
// stored WITHOUT secrets (the common case: a VPP source with no invite
// codes, a Veeam directory without credentials) is only marked scrubbed by
// scrubBaseline, with ObjectStore.UpdateMeta. UpdateMeta publishes a new
// meta message, and GetInfo's ModTime is that message's time: the
// baseline's time moves to the upgrade, and since BaselineStored is set
// only on the rewrite path, replay's baselineTime takes the new time.
// replay.Directory then applies only events stored after the upgrade:
// every change between the seed and the upgrade disappears from
// `replay --as-of now`, and an --as-of before the upgrade is refused with
// ErrBeforeBaseline.
func TestReview15CleanOldBaselineKeepsItsTime(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: "veeam", complete: true, users: veeamUsers(1, 2, 3)}
	old := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := old.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	// The baseline as an earlier release stored it: the same clean users,
	// no metadata.
	b, err := h.Baselines.GetBytes(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	var check []json.RawMessage
	if err := json.Unmarshal(b, &check); err != nil || len(check) != 3 {
		t.Fatalf("baseline: %v %d", err, len(check))
	}
	if _, err := h.Baselines.PutBytes(ctx, "v", b); err != nil {
		t.Fatal(err)
	}
	info, err := h.Baselines.GetInfo(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	seededAt := info.ModTime
	time.Sleep(20 * time.Millisecond)

	// A change while the earlier release still runs.
	src.mu.Lock()
	src.users[1].Role = "CompanyAdministrator"
	src.mu.Unlock()
	if res, err := old.RunOnce(ctx, "v"); err != nil || res.Events != 1 {
		t.Fatalf("change run: %+v %v", res, err)
	}
	changedAt := time.Now()
	time.Sleep(20 * time.Millisecond)

	// The upgrade: a new process, whose first run checks the baseline.
	upgraded := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := upgraded.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}

	dir, err := replay.Directory(ctx, js, "v", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range dir {
		if u.ID == "u2" && u.Role != "CompanyAdministrator" {
			t.Errorf("replay --as-of now after the upgrade: u2 has role %q, want CompanyAdministrator (the change published before the upgrade is lost)", u.Role)
		}
	}
	if _, err := replay.Directory(ctx, js, "v", changedAt); err != nil {
		t.Errorf("replay --as-of a time between the seed (%s) and the upgrade: %v", seededAt.Format(time.RFC3339Nano), err)
	}
}
