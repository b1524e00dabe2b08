package poller_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestStorableUserWithLongFieldsIsRetired (found by the review of issue 12; the comment says what broke before the fix): a user whose 600 kB user name
// fits the KV record and its user.registered event (previous null) is
// registered and stored. Once it is deleted from the directory, its
// retirement carries the user twice (data.user and data.previous, 1.2 MB),
// so the carry stage leaves it out on every run: the absence is confirmed
// but never published, the KV keeps the user "enabled" for ever, and the
// source can never "shrink the record" (README) of a user that is gone.
// The same holds for any later change of that user (role, e-mail).
func TestStorableUserWithLongFieldsIsRetired(t *testing.T) {
	ctx := context.Background()
	nc, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2, 3)}
	p := poller.New(js, h, poller.Config{MaxPayload: int(nc.MaxPayload())}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	big := events.User{Source: "v", SourceKind: events.KindVeeam, ID: "big", UserName: strings.Repeat("n", 600<<10), Status: "enabled"}
	src.users = append(src.users, big)
	res, err := p.RunOnce(ctx, "v")
	if err != nil || res.Uncarried != 0 {
		t.Fatalf("registering the 600 kB user: %+v %v", res, err)
	}
	if got := trail(t, js); !slices.Contains(got, "user.registered big") {
		t.Fatalf("not registered: %v", got)
	}
	// The user is deleted from the directory (one of four: no guard).
	src.users = src.users[:3]
	for i := range 3 {
		res, err = p.RunOnce(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d after the deletion: events %d uncarried %d", i+1, res.Events, res.Uncarried)
	}
	e, err := h.Users.Get(ctx, events.StateKey("v", "big"))
	if err != nil {
		t.Fatal(err)
	}
	var r state.Record
	_ = json.Unmarshal(e.Value(), &r)
	if got := trail(t, js); !slices.Contains(got, "user.retired big") || r.User.Status != events.StatusRemoved {
		t.Fatalf("a user deleted from the directory, whose record the KV holds and whose registration was published, is never retired: stream %v, KV status %q, uncarried %d", got, r.User.Status, res.Uncarried)
	}
}
