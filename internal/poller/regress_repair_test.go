package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// crashOnce is a poller.Config.Fault that stops a run at point once armed.
func crashOnce(point string, armed *atomic.Bool) func(string) error {
	return func(p string) error {
		if p == point && armed.CompareAndSwap(true, false) {
			return errors.New("crash")
		}
		return nil
	}
}

// lastOf is the last "type subject" line of the trail about subject.
func lastOf(lines []string, subject string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasSuffix(lines[i], " "+subject) {
			return lines[i]
		}
	}
	return ""
}

// A user with a long (storable) user name is deleted: its retirement
// carries the user twice, so the carry stage slims it. The poller crashes
// after publishing it (before-write), and the user is back before the next
// run. The repair stage skips the user because its event was slimmed
// ("the rerun republishes it if it still holds") — but it no longer
// holds: the KV still says enabled, the directory says enabled, so nothing
// is ever published again and the trail's last word on the user is
// user.retired, for good. This is exactly what the repair stage was added
// to prevent (TestRunAfterPublishWithoutCommitIsRepaired), for any user
// whose record is large.
func TestSlimmedRetirementIsRepaired(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	big := events.User{Source: "v", SourceKind: events.KindVeeam, ID: "big", UserName: strings.Repeat("n", 600<<10), Status: "enabled"}
	all := append(veeamUsers(span(1, 4)...), big)
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: slices.Clone(all)}
	var crash atomic.Bool
	p := poller.New(js, h, poller.Config{Fault: crashOnce(poller.FaultBeforeWrite, &crash)},
		poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	src.users = slices.Clone(all[:4]) // big deleted (one of five: no guard)
	crash.Store(true)
	if _, err := p.RunOnce(ctx, "v"); err == nil {
		t.Fatal("no crash")
	}
	if got := trail(t, js); !slices.Contains(got, "user.retired big") {
		t.Fatalf("the retirement was not published before the crash: %v", got)
	}
	src.users = slices.Clone(all) // big is back, unchanged
	for range 2 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	e, err := h.Users.Get(ctx, events.StateKey("v", "big"))
	if err != nil {
		t.Fatal(err)
	}
	var r state.Record
	_ = json.Unmarshal(e.Value(), &r)
	got := trail(t, js)
	if last := lastOf(got, "big"); last == "user.retired big" {
		t.Fatalf("big is in the directory and in the KV as %q, but its last event says it was removed: %v", r.User.Status, got)
	}
}

// A user whose user name is long and written in a three-byte script has
// its e-mail changed; its user.updated event is slimmed. events.Slim cuts
// the name at SlimFieldBytes and strings.ToValidUTF8 drops the split
// character, so the marker starts before byte SlimFieldBytes and repair's
// slimmed() (which looks for it from byte SlimFieldBytes on) does not see
// the cut. After a crash before-write, the repair writes the cut user name
// into the KV ("the state a poller keeps is never slimmed"), and the diff
// then publishes a user.updated that never happened: userName from the
// cut value to the full one.
func TestRepairNeverStoresASlimmedMultibyteName(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	big := events.User{Source: "v", SourceKind: events.KindVeeam, ID: "big", UserName: strings.Repeat("日", 200<<10), Email: "a@x", Status: "enabled"}
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: append(veeamUsers(span(1, 4)...), big)}
	var crash atomic.Bool
	p := poller.New(js, h, poller.Config{Fault: crashOnce(poller.FaultBeforeWrite, &crash)},
		poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	src.users[4].Email = "b@x"
	crash.Store(true)
	if _, err := p.RunOnce(ctx, "v"); err == nil {
		t.Fatal("no crash")
	}
	for range 2 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	got := trail(t, js)
	n := 0
	for _, l := range got {
		if l == "user.updated big" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one e-mail change, %d user.updated events on the stream (the repair stored the slimmed user name and the diff 'changed' it back): %v", n, got)
	}
}

// A user whose raw record is large (but within MAX_RAW_BYTES and the KV
// record limit) changes e-mail; its event carries raw twice and is slimmed
// (raw cut to SlimFieldBytes). slimmed() only looks at the fields, so the
// repair after a crash before-write stores the cut raw in the KV. raw is
// not in the fingerprint, so no later run rewrites it: the KV keeps a cut
// raw record for as long as the user's tracked fields stay the same.
func TestRepairNeverStoresASlimmedRaw(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	raw, _ := json.Marshal(map[string]string{"note": strings.Repeat("r", 30<<10)})
	big := events.User{Source: "v", SourceKind: events.KindVeeam, ID: "big", Email: "a@x", Status: "enabled", Raw: raw}
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: append(veeamUsers(span(1, 4)...), big)}
	var crash atomic.Bool
	p := poller.New(js, h, poller.Config{MaxPayload: 64 << 10, Fault: crashOnce(poller.FaultBeforeWrite, &crash)},
		poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	src.users[4].Email = "b@x"
	crash.Store(true)
	if _, err := p.RunOnce(ctx, "v"); err == nil {
		t.Fatal("no crash")
	}
	for range 2 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	e, err := h.Users.Get(ctx, events.StateKey("v", "big"))
	if err != nil {
		t.Fatal(err)
	}
	var r state.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatal(err)
	}
	if r.User.Email != "b@x" || len(r.User.Raw) != len(raw) {
		t.Fatalf("KV holds e-mail %q and a raw record of %d bytes; the directory's is %d bytes (the state a poller keeps is never slimmed)", r.User.Email, len(r.User.Raw), len(raw))
	}
}
