package poller_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestRunAfterPublishWithoutCommitIsRepaired (found by the review of issue 12; the comment says what broke before the fix): a user's confirmed absence is
// published (user.retired), the poller crashes before writing state
// (FaultBeforeWrite), and the user is back before the next run. The KV
// still holds the user as it was, so the rerun sees no change and publishes
// nothing: the audit trail (and every sink) says the user was removed while
// it is in the directory, for good. The rerun does not "republish the same
// ids" (SPEC §2.3) because the change it would republish is gone; nothing
// reconciles the published retirement. The simulation's lastEventIsState
// flags exactly this state.
func TestRunAfterPublishWithoutCommitIsRepaired(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(span(1, 5)...)}
	var crash atomic.Bool
	p := poller.New(js, h, poller.Config{Fault: func(point string) error {
		if point == poller.FaultBeforeWrite && crash.CompareAndSwap(true, false) {
			return errors.New("crash")
		}
		return nil
	}}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	all := slices.Clone(src.users)
	src.users = slices.Delete(slices.Clone(all), 2, 3) // u3 deleted
	crash.Store(true)
	if _, err := p.RunOnce(ctx, "v"); err == nil {
		t.Fatal("no crash")
	}
	src.users = all // u3 is back, unchanged
	for range 2 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	got := trail(t, js)
	if i := slices.Index(got, "user.retired u3"); i >= 0 && !slices.Contains(got[i:], "user.registered u3") {
		t.Fatalf("u3 is in the directory and in the KV as enabled, but its last event says it was removed: %v", got)
	}
}
