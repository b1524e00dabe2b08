package diff_test

import (
	"slices"
	"testing"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// v2 is an Apple v2 user with the fingerprint of its key's entries (nil
// when retired is -2: not known).
func v2(status string, retired int, active string) events.User {
	u := vpp2("k", status, "k@x")
	if retired > -2 {
		u.Entries = &events.V2Entries{Retired: retired, Active: active}
	}
	return u
}

// review17: an Apple v2 user retired and re-created between two runs is a
// retirement and a registration (then the association of the new entry);
// entries not known (a record of an older rollcall) are never a change.
func TestComputeVPP2RetiredAndRecreated(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prev, now  events.User
		want       []string // type previous-status→status
		write      bool
		wantWrites *events.V2Entries
	}{
		{name: "registered re-created identical but for the invite code",
			prev: v2("registered", 0, "a"), now: v2("registered", 1, "b"),
			want:  []string{"user.retired registered→retired", "user.registered retired→registered"},
			write: true, wantWrites: &events.V2Entries{Retired: 1, Active: "b"}},
		{name: "associated re-created and associated again",
			prev: v2("associated", 2, "a"), now: v2("associated", 3, "b"),
			want:  []string{"user.retired associated→retired", "user.registered retired→registered", "user.associated registered→associated"},
			write: true, wantWrites: &events.V2Entries{Retired: 3, Active: "b"}},
		{name: "a retired entry beside an active entry that did not change",
			prev: v2("associated", 0, "a"), now: v2("associated", 1, "a"),
			write: true, wantWrites: &events.V2Entries{Retired: 1, Active: "a"}},
		{name: "a retired entry gone",
			prev: v2("registered", 2, "a"), now: v2("registered", 1, "b"),
			write: true, wantWrites: &events.V2Entries{Retired: 1, Active: "b"}},
		{name: "recorded before rollcall kept entries: not known, no change",
			prev: v2("associated", -2, ""), now: v2("associated", 3, "b"),
			write: true, wantWrites: &events.V2Entries{Retired: 3, Active: "b"}},
		{name: "recorded before rollcall kept entries, none retired: nothing to write",
			prev: v2("associated", -2, ""), now: v2("associated", 0, "b")},
		{name: "an incremental listing keeps the recorded count",
			prev: v2("associated", 2, "a"), now: v2("associated", -1, "a")},
		{name: "an incremental listing with an e-mail change keeps the recorded count",
			prev: v2("associated", 2, "a"), now: func() events.User { u := v2("associated", -1, "c"); u.Email = "new@x"; return u }(),
			want:  []string{"user.updated associated→associated"},
			write: true, wantWrites: &events.V2Entries{Retired: 2, Active: "c"}},
		{name: "retired: the retirement alone",
			prev: v2("associated", 1, "a"), now: v2("retired", -2, ""),
			want:  []string{"user.retired associated→retired"},
			write: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			previous := map[string]diff.Prev{"k": {User: tc.prev, Revision: 7}}
			res, err := diff.Compute(diff.Input{Source: "vpp2", Kind: events.KindVPP2, Previous: previous,
				Snapshot: []events.User{tc.now}, Observed: t0})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			ids := map[string]bool{}
			for _, e := range res.Events {
				if err := events.Validate(e); err != nil {
					t.Errorf("invalid event: %v", err)
				}
				d, err := events.DecodeData(e)
				if err != nil {
					t.Fatal(err)
				}
				if d.Previous == nil {
					t.Fatalf("%s without previous", e.Type())
				}
				got = append(got, e.Type()+" "+d.Previous.Status+"→"+d.User.Status)
				ids[e.ID()] = true
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events %q, want %q", got, tc.want)
			}
			if len(ids) != len(got) {
				t.Errorf("event ids not distinct: %v", ids)
			}
			if (len(res.Writes) == 1) != tc.write || len(res.Writes) > 1 {
				t.Fatalf("writes %v, want a write: %v", res.Writes, tc.write)
			}
			if !tc.write {
				return
			}
			w := res.Writes[0]
			if w.Revision != 7 {
				t.Errorf("write against revision %d, want 7", w.Revision)
			}
			switch e := w.User.Entries; {
			case tc.wantWrites == nil && e != nil:
				t.Errorf("written with entries %+v, want none", *e)
			case tc.wantWrites != nil && (e == nil || *e != *tc.wantWrites):
				t.Errorf("written with entries %+v, want %+v", e, *tc.wantWrites)
			}
		})
	}
}

// The entries of an Apple v2 key change a user's fingerprint only when it
// has retired entries: every other fingerprint is what it always was, so a
// state written before rollcall kept them is not rewritten for it.
func TestVPP2EntriesFingerprint(t *testing.T) {
	plain := vpp2("k", "associated", "k@x")
	for _, e := range []*events.V2Entries{nil, {Retired: 0, Active: "a"}, {Retired: -1, Active: "b"}} {
		u := plain
		u.Entries = e
		if u.Digest() != plain.Digest() {
			t.Errorf("entries %+v change the fingerprint", e)
		}
	}
	a, b := plain, plain
	a.Entries = &events.V2Entries{Retired: 1, Active: "a"}
	b.Entries = &events.V2Entries{Retired: 2, Active: "a"}
	if a.Digest() == plain.Digest() || a.Digest() == b.Digest() {
		t.Error("retired entries do not change the fingerprint")
	}
}

// An Apple v2 user associated before and registered now is a new entry,
// whatever the counts of retired entries say (review 17c: a purge
// meanwhile leaves them equal), and whether they are known or not: an
// entry never goes back to registered.
func TestComputeVPP2AssociatedThenRegisteredIsARecreation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prev, now events.User
	}{
		{"counts equal after a purge", v2("associated", 1, "a"), v2("registered", 1, "b")},
		{"entries not known", v2("associated", -2, ""), v2("registered", -1, "b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := diff.Compute(diff.Input{Source: "vpp2", Kind: events.KindVPP2,
				Previous: map[string]diff.Prev{"k": {User: tc.prev, Revision: 7}}, Snapshot: []events.User{tc.now}, Observed: t0})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range res.Events {
				got = append(got, e.Type())
			}
			if want := []string{events.TypeRetired, events.TypeRegistered}; !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
		})
	}
}
