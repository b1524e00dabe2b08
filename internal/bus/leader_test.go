package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
)

// TestLeaderReadsSeeEveryWrite reads keys through bus.LeaderReads while a
// replica that has not caught up answers direct gets beside the leader:
// a mirror with direct gets of the users bucket's stream, started past its
// last message (a follower far behind; NATS promises no read-your-writes
// for direct gets, docs.nats.io "Key/Value Store"). nats.go's Get, a
// direct get, is sometimes answered by that replica and misses a key that
// is there; a read from the leader never does. Deleted, purged and
// never-written keys read as not found, as with nats.go's Get.
func TestLeaderReadsSeeEveryWrite(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := js.KeyValue(ctx, bus.UsersBucket) // nats.go's own handle: direct gets
	if err != nil {
		t.Fatal(err)
	}
	rev, err := raw.Put(ctx, "vpp.present", []byte(`{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"vpp.deleted", "vpp.purged"} {
		if _, err := raw.Put(ctx, k, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Delete(ctx, "vpp.deleted"); err != nil {
		t.Fatal(err)
	}
	if err := raw.Purge(ctx, "vpp.purged"); err != nil {
		t.Fatal(err)
	}

	// The replica copies one other key only: once it has, it counts as
	// caught up and answers direct gets of the bucket's stream.
	lagging := jetstream.StreamConfig{Name: "LAGGING", Storage: jetstream.MemoryStorage, MirrorDirect: true,
		Mirror: &jetstream.StreamSource{Name: "KV_" + bus.UsersBucket, FilterSubject: "$KV." + bus.UsersBucket + ".vpp.other"}}
	mirror, err := js.CreateStream(ctx, lagging)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "vpp.other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, err := mirror.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lagging replica copied nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}

	stale := 0
	for range 200 {
		e, err := raw.Get(ctx, "vpp.present")
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			stale++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Revision() != rev {
			stale++
		}
	}
	if stale == 0 {
		t.Fatal("the lagging replica never answered a direct get: the test shows nothing")
	}
	t.Logf("direct gets answered by the lagging replica: %d of 200", stale)

	for range 200 {
		e, err := h.Users.Get(ctx, "vpp.present")
		if err != nil {
			t.Fatalf("leader read of a key that is there: %v", err)
		}
		if e.Revision() != rev || string(e.Value()) != `{"v":2}` || e.Key() != "vpp.present" || e.Bucket() != bus.UsersBucket ||
			e.Operation() != jetstream.KeyValuePut || time.Since(e.Created()) > time.Minute {
			t.Fatalf("leader read: key %s rev %d value %s op %v created %v, want rev %d", e.Key(), e.Revision(), e.Value(), e.Operation(), e.Created(), rev)
		}
	}
	for _, k := range []string{"vpp.deleted", "vpp.purged", "vpp.never"} {
		if _, err := h.Users.Get(ctx, k); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("leader read of %s: %v, want jetstream.ErrKeyNotFound", k, err)
		}
	}
}

// LastRevision asks the leader for the last write to a set of keys.
func TestLeaderLastRevision(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	lr, ok := h.Users.(interface {
		LastRevision(context.Context, string) (uint64, error)
	})
	if !ok {
		t.Fatal("the users bucket of bus.Ensure does not tell its last revision")
	}
	if rev, err := lr.LastRevision(ctx, "vpp.>"); err != nil || rev != 0 {
		t.Fatalf("empty bucket: %d, %v", rev, err)
	}
	var want uint64
	for _, k := range []string{"vpp.a", "veeam.b", "vpp.c", "veeam.d"} {
		rev, err := h.Users.Put(ctx, k, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if k == "vpp.c" {
			want = rev
		}
	}
	if rev, err := lr.LastRevision(ctx, "vpp.>"); err != nil || rev != want {
		t.Fatalf("LastRevision(vpp.>) = %d, %v; want %d", rev, err, want)
	}
	if err := h.Users.Delete(ctx, "vpp.a"); err != nil {
		t.Fatal(err)
	}
	if rev, err := lr.LastRevision(ctx, "vpp.>"); err != nil || rev <= want {
		t.Fatalf("after a delete, LastRevision(vpp.>) = %d, %v; want the delete's, above %d", rev, err, want)
	}
}
