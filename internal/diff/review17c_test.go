package diff_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// review17c: compute runs one Compute over prev (nil: unknown) and now.
func review17cCompute(t *testing.T, complete bool, prev *events.User, now events.User) diff.Result {
	t.Helper()
	in := diff.Input{Source: now.Source, Kind: now.SourceKind, Previous: map[string]diff.Prev{}, Snapshot: []events.User{now},
		Complete: complete, Observed: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	if prev != nil {
		in.Previous[prev.ID] = diff.Prev{User: *prev, Revision: 7}
	}
	res, err := diff.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A key rollcall does not know, listed active by an incremental run (its
// count not known to the source), is recorded with no retired entry: every
// entry of a new key is new, so shown; a retired one beside the active has
// the key looked up. Recorded "not known", a later retirement and
// re-creation between two polls went unseen (the fix of review 17c).
func TestReview17cNewKeyIncrementalRecordsZero(t *testing.T) {
	now := vpp2("k", "registered", "k@x")
	now.Entries = &events.V2Entries{Retired: -1, Active: "a"}
	res := review17cCompute(t, false, nil, now)
	if len(res.Writes) != 1 || res.Writes[0].User.Entries == nil || res.Writes[0].User.Entries.Retired != 0 || res.Writes[0].User.Entries.Active != "a" {
		t.Fatalf("writes %+v, want the user with entries {0 a}", res.Writes)
	}
	// And then retired and re-created between two polls (looked up: count 1).
	recorded := res.Writes[0].User
	again := vpp2("k", "registered", "k@x")
	again.Entries = &events.V2Entries{Retired: 1, Active: "b"}
	res = review17cCompute(t, false, &recorded, again)
	var types []string
	for _, e := range res.Events {
		types = append(types, e.Type())
	}
	if len(types) != 2 || types[0] != events.TypeRetired || types[1] != events.TypeRegistered {
		t.Errorf("events %v, want user.retired then user.registered", types)
	}
	// A tombstone's key back, listed active by an incremental run: its
	// entries all vanished with it.
	gone := vpp2("k", events.StatusRemoved, "k@x")
	gone.Entries = &events.V2Entries{Retired: 4, Active: "z"}
	res = review17cCompute(t, false, &gone, now)
	if len(res.Writes) != 1 || res.Writes[0].User.Entries == nil || res.Writes[0].User.Entries.Retired != 0 {
		t.Errorf("a key back after its removal: writes %+v, want entries {0 a}", res.Writes)
	}
}

// Holds: a record written by 1d66afa with a count not known (-1) is never
// taken for a rise.
func TestReview17cStoredUnknownCountIsNoChange(t *testing.T) {
	prev := vpp2("k", "associated", "k@x")
	prev.Entries = &events.V2Entries{Retired: -1, Active: "a"}
	now := vpp2("k", "associated", "k@x")
	now.Entries = &events.V2Entries{Retired: 2, Active: "b"}
	if res := review17cCompute(t, true, &prev, now); len(res.Events) != 0 {
		t.Errorf("a count not known gave %d events", len(res.Events))
	}
}

// Holds: the entries' fingerprint is never published (no member in the
// event's data, the retirement's previous user included), and users of
// other kinds keep the fingerprint they always had, entries or not.
func TestReview17cEntriesNeverPublishedNorInOtherFingerprints(t *testing.T) {
	prev := vpp2("k", "associated", "k@x")
	prev.Entries = &events.V2Entries{Retired: 0, Active: "secretish0001"}
	now := vpp2("k", "registered", "k@x")
	now.Entries = &events.V2Entries{Retired: 1, Active: "secretish0002"}
	res := review17cCompute(t, true, &prev, now)
	if len(res.Events) < 2 {
		t.Fatalf("%d events, want the pair", len(res.Events))
	}
	for _, e := range res.Events {
		if bytes.Contains(e.Data(), []byte("secretish")) || bytes.Contains(e.Data(), []byte("vpp2Entries")) || bytes.Contains(e.Data(), []byte(`"retired":`)) {
			t.Errorf("event %s publishes the entries: %s", e.Type(), e.Data())
		}
	}
	for _, u := range []events.User{vpp("1", "associated", "a@x"), veeam("u", "Enabled", "CompanyOwner", "n"), vpp2("k", "registered", "k@x")} {
		d := u.Digest()
		u.Entries = &events.V2Entries{Retired: 0, Active: "x"}
		if u.Digest() != d {
			t.Errorf("%s: a count of 0 changes the fingerprint", u.SourceKind)
		}
	}
	// Other kinds: Compute leaves their (absent) entries alone.
	v := vpp("1", "registered", "a@x")
	if res := review17cCompute(t, false, nil, v); len(res.Writes) != 1 || res.Writes[0].User.Entries != nil {
		t.Errorf("a vpp user written with entries: %+v", res.Writes)
	}
}
