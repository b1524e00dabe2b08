package poller_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestMidPublishCrashLosesNoChange (found by the second review of issue 12; what broke before the fix): one change of a Veeam user touches its role and its e-mail: the diff
// gives two events, user.roleChanged then user.updated, and each carries
// the user's whole new state in data.user. The run crashes half-way
// through publishing (FaultMidPublish: the first of the two is stored).
// The repair stage takes the state the user's last stored event carries —
// the new e-mail included — and writes it to the KV; the diff then sees
// no change, and the user.updated event (the e-mail change) is never
// published. SPEC §6: a crash at any point loses nothing.
func TestMidPublishCrashLosesNoChange(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(span(1, 4)...)}
	src.users[0].Role, src.users[0].Email = "user", "a@x"
	var crash atomic.Bool
	p := poller.New(js, h, poller.Config{Fault: crashOnce(poller.FaultMidPublish, &crash)},
		poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	src.users[0].Role, src.users[0].Email = "admin", "b@x"
	crash.Store(true)
	if _, err := p.RunOnce(ctx, "v"); err == nil {
		t.Fatal("no crash")
	}
	t.Logf("stored before the crash: %v", trail(t, js))
	for range 2 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	got := trail(t, js)
	if !slices.Contains(got, "user.roleChanged u1") || !slices.Contains(got, "user.updated u1") {
		t.Fatalf("u1's role and e-mail changed; the stream has %v", got)
	}
}
