package vpp2_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/pkg/events"
)

// review17: the old entry of a user retired and re-created between two
// polls may be listed on a later page than the new one (here: the new
// entry has the lower legacy userId, so the fake lists it first); its
// count is still taken (the new entry's page is fetched again, or the key
// looked up), and the pair is a retirement and a registration.
func TestReview17RecreatedRetiredEntryOnALaterPage(t *testing.T) {
	for _, mode := range []string{"full", "incremental"} {
		t.Run(mode, func(t *testing.T) {
			fullEvery := time.Duration(0)
			if mode == "incremental" {
				fullEvery = time.Hour
			}
			r := newRig(t, fullEvery, 1, vu(5, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered))
			r.run(t)
			r.dir.Remove(5)
			r.dir.Put(vu(7, "alice", vpptest.StatusRetired))
			r.dir.Put(vu(1, "alice", vpptest.StatusRegistered))
			r.run(t)
			want := []string{"user.retired alice retired associated", "user.registered alice registered retired"}
			if got := r.trail(t); !slices.Equal(got, want) {
				t.Errorf("events %q, want %q", got, want)
			}
			r.run(t) // nothing more
			if got := r.trail(t); !slices.Equal(got, want) {
				t.Errorf("after another run: events %q, want %q", got, want)
			}
		})
	}
}

// review17: users recorded before rollcall kept the fingerprint of their
// keys' entries (an upgrade) have none: the first runs after the upgrade
// take it without publishing anything, even for keys with retired
// entries; a retirement and re-creation after that is seen.
func TestReview17EntriesNotKnownAfterUpgrade(t *testing.T) {
	for _, mode := range []string{"full", "incremental"} {
		t.Run(mode, func(t *testing.T) {
			fullEvery := time.Duration(0)
			if mode == "incremental" {
				fullEvery = time.Hour
			}
			r := newRig(t, fullEvery, 1, vu(0, "alice", vpptest.StatusRetired), vu(1, "alice", vpptest.StatusAssociated),
				vu(2, "bob", vpptest.StatusRegistered), vu(3, "bob", vpptest.StatusRetired), vu(4, "bob", vpptest.StatusRetired))
			r.run(t)
			stripEntries(t, r)
			// An old retired entry modified: the incremental run looks
			// alice up and takes her count, unknown until now.
			old := vu(0, "alice", vpptest.StatusRetired)
			old.Email = "old@school.example"
			r.dir.Put(old)
			r.run(t)
			r.run(t)
			if got := r.trail(t); len(got) != 0 {
				t.Fatalf("runs after the upgrade published %q", got)
			}
			r.dir.Put(vu(1, "alice", vpptest.StatusRetired))
			r.dir.Put(vu(9, "alice", vpptest.StatusRegistered))
			r.run(t)
			want := []string{"user.retired alice retired associated", "user.registered alice registered retired"}
			if got := r.trail(t); !slices.Equal(got, want) {
				t.Errorf("events %q, want %q", got, want)
			}
		})
	}
}

// stripEntries rewrites the source's records as a rollcall that did not
// keep the entries' fingerprint wrote them.
func stripEntries(t *testing.T, r *rig) {
	t.Helper()
	ctx := context.Background()
	kv, err := r.js.KeyValue(ctx, bus.UsersBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stripped := 0
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		if _, ok := rec["vpp2Entries"]; !ok {
			continue
		}
		delete(rec, "vpp2Entries")
		var u events.User
		if err := json.Unmarshal(rec["user"], &u); err != nil {
			t.Fatal(err)
		}
		rec["fingerprint"], _ = json.Marshal(u.Fingerprint()) // without the entries
		b, _ := json.Marshal(rec)
		if _, err := kv.Update(ctx, k, b, e.Revision()); err != nil {
			t.Fatal(err)
		}
		stripped++
	}
	if stripped == 0 {
		t.Fatal("no record held the entries' fingerprint")
	}
}
