package poller_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestPurgedKeyInvalidatesTheIndex (found by the review of issue 12; the comment says what broke before the fix): an operator deletes a user's key and
// compacts the bucket (kv.PurgeDeletes, `nats kv compact`; a subject purge
// of the KV stream does the same) between two runs. The delete was a
// foreign write, but no message of it is left after the last check, so
// Users.Valid finds nothing foreign and keeps the index, which still lists
// the user with its old revision. The user, present and unchanged in the
// directory, is then never written again: the KV no longer equals the
// directory however many runs pass (SPEC §7 oracle), while a freshly loaded
// index would register and store it at once.
func TestPurgedKeyInvalidatesTheIndex(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2, 3, 4, 5)}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	for range 2 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	key := events.StateKey("v", "u2")
	if err := h.Users.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := h.Users.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := p.RunOnce(ctx, "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Users.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			fresh := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
			_, ferr := fresh.RunOnce(ctx, "v")
			_, gerr := h.Users.Get(ctx, key)
			t.Logf("a restarted poller (fresh index): run err %v, u2 in the KV afterwards: %v", ferr, gerr == nil)
			t.Fatalf("u2 is in the directory but, three runs after its key was deleted and compacted away, still not in the KV (stream: %v)", trail(t, js))
		}
		t.Fatal(err)
	}
}
