package diff_test

import (
	"slices"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func vpp(id, status, email string) events.User {
	return events.User{Source: "vpp", SourceKind: events.KindVPP, ID: id, Status: status, Email: email}
}

func vpp2(id, status, email string) events.User {
	return events.User{Source: "vpp2", SourceKind: events.KindVPP2, ID: id, Status: status, Email: email}
}

func veeam(id, status, role, name string) events.User {
	return events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, Status: status, Role: role, UserName: name}
}

func prev(rev uint64, users ...events.User) map[string]diff.Prev {
	m := map[string]diff.Prev{}
	for i, u := range users {
		m[u.ID] = diff.Prev{User: u, Revision: rev + uint64(i)}
	}
	return m
}

type emitted struct {
	typ, subject, reason string
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		previous map[string]diff.Prev
		snapshot []events.User
		complete bool
		want     []emitted
		writes   []string // ids written, with their new status
		removed  []string
	}{
		{
			name:     "unknown user is registered",
			kind:     events.KindVPP,
			previous: prev(1),
			snapshot: []events.User{vpp("3", "Registered", "u3@x")},
			want:     []emitted{{events.TypeRegistered, "3", events.ReasonNew}},
			writes:   []string{"3=Registered"},
		},
		{
			name:     "v2 key re-created with a status rollcall does not know",
			kind:     events.KindVPP2,
			previous: prev(5, vpp2("3", "retired", "u3@x")),
			snapshot: []events.User{vpp2("3", "invited", "u3@x")},
			// The arrival, then its move from registered to the status it has.
			want:   []emitted{{events.TypeRegistered, "3", events.ReasonNew}, {events.TypeUpdated, "3", events.ReasonStatus}},
			writes: []string{"3=invited"},
		},
		{
			name:     "v2 retirement recorded on an older retired entry is the retirement alone",
			kind:     events.KindVPP2,
			previous: prev(5, vpp2("3", "associated", "u3@x")),
			snapshot: []events.User{vpp2("3", "retired", "old@x")},
			want:     []emitted{{events.TypeRetired, "3", events.ReasonStatus}},
			writes:   []string{"3=retired"},
		},
		{
			name:     "registered becomes associated",
			kind:     events.KindVPP,
			previous: prev(5, vpp("3", "Registered", "u3@x")),
			snapshot: []events.User{vpp("3", "Associated", "u3@x")},
			want:     []emitted{{events.TypeAssociated, "3", events.ReasonStatus}},
			writes:   []string{"3=Associated"},
		},
		{
			name:     "associated becomes retired by status",
			kind:     events.KindVPP,
			previous: prev(5, vpp("1", "Associated", "u1@x")),
			snapshot: []events.User{vpp("1", "Retired", "u1@x")},
			want:     []emitted{{events.TypeRetired, "1", events.ReasonStatus}},
			writes:   []string{"1=Retired"},
		},
		{
			name:     "absent from a complete snapshot is retired as removed",
			kind:     events.KindVeeam,
			previous: prev(5, veeam("a", "Enabled", "CompanyOwner", "Alpha"), veeam("b", "Enabled", "CompanyOwner", "Beta")),
			snapshot: []events.User{veeam("a", "Enabled", "CompanyOwner", "Alpha")},
			complete: true,
			want:     []emitted{{events.TypeRetired, "b", events.ReasonRemoved}},
			writes:   []string{"b=removed"},
			removed:  []string{"b"},
		},
		{
			name:     "absent from an incomplete snapshot is not retired",
			kind:     events.KindVPP,
			previous: prev(5, vpp("1", "Associated", "u1@x"), vpp("2", "Associated", "u2@x")),
			snapshot: []events.User{vpp("1", "Associated", "u1@x")},
			complete: false,
		},
		{
			name:     "already retired user absent from a complete snapshot is left alone",
			kind:     events.KindVPP,
			previous: prev(5, vpp("1", "Retired", "u1@x")),
			complete: true,
		},
		{
			name:     "tombstone absent again emits nothing",
			kind:     events.KindVeeam,
			previous: prev(5, veeam("a", events.StatusRemoved, "CompanyOwner", "Alpha")),
			complete: true,
		},
		{
			name:     "removed user coming back is registered again",
			kind:     events.KindVeeam,
			previous: prev(9, veeam("a", events.StatusRemoved, "CompanyOwner", "Alpha")),
			snapshot: []events.User{veeam("a", "Enabled", "CompanyOwner", "Alpha")},
			complete: true,
			want:     []emitted{{events.TypeRegistered, "a", events.ReasonNew}},
			writes:   []string{"a=Enabled"},
		},
		{
			name:     "role change",
			kind:     events.KindVeeam,
			previous: prev(5, veeam("a", "Enabled", "CompanyAdministrator", "Alpha")),
			snapshot: []events.User{veeam("a", "Enabled", "CompanyOwner", "Alpha")},
			complete: true,
			want:     []emitted{{events.TypeRoleChanged, "a", events.ReasonRole}},
			writes:   []string{"a=Enabled"},
		},
		{
			name:     "role differing only in case is no change",
			kind:     events.KindVeeam,
			previous: prev(5, veeam("a", "enabled", "companyOwner", "Alpha")),
			snapshot: []events.User{veeam("a", "Enabled", "CompanyOwner", "Alpha")},
			complete: true,
		},
		{
			name:     "veeam status enabled to disabled is an update",
			kind:     events.KindVeeam,
			previous: prev(5, veeam("a", "Enabled", "CompanyOwner", "Alpha")),
			snapshot: []events.User{veeam("a", "Disabled", "CompanyOwner", "Alpha")},
			complete: true,
			want:     []emitted{{events.TypeUpdated, "a", events.ReasonFields}},
			writes:   []string{"a=Disabled"},
		},
		{
			name:     "email change is an update",
			kind:     events.KindVPP,
			previous: prev(5, vpp("1", "Associated", "old@x")),
			snapshot: []events.User{vpp("1", "Associated", "new@x")},
			want:     []emitted{{events.TypeUpdated, "1", events.ReasonFields}},
			writes:   []string{"1=Associated"},
		},
		{
			name:     "role and name change together give role then update",
			kind:     events.KindVeeam,
			previous: prev(5, veeam("a", "Enabled", "CompanyUser", "Alpha")),
			snapshot: []events.User{veeam("a", "Enabled", "CompanyOwner", "Alfa")},
			complete: true,
			want:     []emitted{{events.TypeRoleChanged, "a", events.ReasonRole}, {events.TypeUpdated, "a", events.ReasonFields}},
			writes:   []string{"a=Enabled"},
		},
		{
			name:     "new vpp user first seen associated yields registered then associated",
			kind:     events.KindVPP,
			previous: prev(1),
			snapshot: []events.User{vpp("1", "Associated", "u1@x")},
			want:     []emitted{{events.TypeRegistered, "1", events.ReasonNew}, {events.TypeAssociated, "1", events.ReasonStatus}},
			writes:   []string{"1=Associated"},
		},
		{
			name:     "new vpp user first seen retired yields registered then retired",
			kind:     events.KindVPP,
			previous: prev(1),
			snapshot: []events.User{vpp("7", "Retired", "u7@x")},
			want:     []emitted{{events.TypeRegistered, "7", events.ReasonNew}, {events.TypeRetired, "7", events.ReasonStatus}},
			writes:   []string{"7=Retired"},
		},
		{
			name:     "unchanged user writes nothing",
			kind:     events.KindVPP,
			previous: prev(5, vpp("1", "Associated", "u1@x")),
			snapshot: []events.User{vpp("1", "associated", "u1@x")},
			complete: true,
		},
		{
			name: "raw-only change writes nothing",
			kind: events.KindVPP,
			previous: func() map[string]diff.Prev {
				u := vpp("3", "Registered", "u3@x")
				u.Raw = []byte(`{"inviteUrl":"a"}`)
				return prev(5, u)
			}(),
			snapshot: func() []events.User {
				u := vpp("3", "Registered", "u3@x")
				u.Raw = []byte(`{"inviteUrl":"b"}`)
				return []events.User{u}
			}(),
			complete: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source := "vpp"
			if tt.kind == events.KindVeeam {
				source = "veeam"
			}
			res, err := diff.Compute(diff.Input{Source: source, Kind: tt.kind, Previous: tt.previous, Snapshot: tt.snapshot, Complete: tt.complete, Observed: t0})
			if err != nil {
				t.Fatal(err)
			}
			var got []emitted
			for _, e := range res.Events {
				if err := events.Validate(e); err != nil {
					t.Errorf("invalid event: %v", err)
				}
				d, err := events.DecodeData(e)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, emitted{e.Type(), e.Subject(), d.Reason})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
			var writes []string
			for _, w := range res.Writes {
				writes = append(writes, w.User.ID+"="+w.User.Status)
				if p, ok := tt.previous[w.User.ID]; ok && w.Revision != p.Revision {
					t.Errorf("write of %s against revision %d, want %d", w.User.ID, w.Revision, p.Revision)
				}
			}
			if !slices.Equal(writes, tt.writes) {
				t.Errorf("writes = %v, want %v", writes, tt.writes)
			}
			if !slices.Equal(res.Removed, tt.removed) {
				t.Errorf("removed = %v, want %v", res.Removed, tt.removed)
			}
		})
	}
}

func TestComputeEventDetails(t *testing.T) {
	t.Run("removal carries previous state and tombstone", func(t *testing.T) {
		res, err := diff.Compute(diff.Input{Source: "veeam", Kind: events.KindVeeam, Complete: true, Observed: t0,
			Previous: prev(7, veeam("b", "Enabled", "CompanyOwner", "Beta"))})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := events.DecodeData(res.Events[0])
		if d.Previous == nil || d.Previous.Status != "Enabled" || d.User.Status != events.StatusRemoved {
			t.Fatalf("data = %+v", d)
		}
		want := []events.Change{{Field: "status", From: "Enabled", To: events.StatusRemoved}}
		if !slices.Equal(d.Changes, want) {
			t.Fatalf("changes = %v, want %v", d.Changes, want)
		}
	})
	t.Run("role change names from and to", func(t *testing.T) {
		res, err := diff.Compute(diff.Input{Source: "veeam", Kind: events.KindVeeam, Complete: true, Observed: t0,
			Previous: prev(7, veeam("a", "Enabled", "CompanyAdministrator", "Alpha")),
			Snapshot: []events.User{veeam("a", "Enabled", "CompanyOwner", "Alpha")}})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := events.DecodeData(res.Events[0])
		want := []events.Change{{Field: "role", From: "CompanyAdministrator", To: "CompanyOwner"}}
		if !slices.Equal(d.Changes, want) {
			t.Fatalf("changes = %v, want %v", d.Changes, want)
		}
	})
	t.Run("chained arrival events link previous states", func(t *testing.T) {
		res, err := diff.Compute(diff.Input{Source: "vpp", Kind: events.KindVPP, Observed: t0,
			Snapshot: []events.User{vpp("1", "Associated", "u1@x")}})
		if err != nil {
			t.Fatal(err)
		}
		reg, _ := events.DecodeData(res.Events[0])
		assoc, _ := events.DecodeData(res.Events[1])
		if reg.Previous != nil || reg.User.Status != "registered" {
			t.Fatalf("registered data = %+v", reg)
		}
		if assoc.Previous == nil || assoc.Previous.Status != "registered" || assoc.User.Status != "Associated" {
			t.Fatalf("associated data = %+v", assoc)
		}
		if res.Events[0].ID() == res.Events[1].ID() {
			t.Fatal("two transitions share an id")
		}
	})
	t.Run("held removals are listed but neither published nor written", func(t *testing.T) {
		res, err := diff.Compute(diff.Input{Source: "veeam", Kind: events.KindVeeam, Complete: true, HoldRemovals: true, Observed: t0,
			Previous: prev(7, veeam("a", "Enabled", "CompanyOwner", "Alpha"), veeam("b", "Enabled", "CompanyOwner", "Beta")),
			Snapshot: []events.User{veeam("c", "Enabled", "CompanyOwner", "Gamma")}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Removed, []string{"a", "b"}) || res.Known != 2 {
			t.Fatalf("removed %v known %d", res.Removed, res.Known)
		}
		if len(res.Events) != 1 || res.Events[0].Type() != events.TypeRegistered || len(res.Writes) != 1 {
			t.Fatalf("held run emitted %d events, %d writes", len(res.Events), len(res.Writes))
		}
	})
	t.Run("duplicate user in one snapshot is an error", func(t *testing.T) {
		_, err := diff.Compute(diff.Input{Source: "vpp", Kind: events.KindVPP, Observed: t0,
			Snapshot: []events.User{vpp("1", "Associated", "a"), vpp("1", "Retired", "a")}})
		if err == nil {
			t.Fatal("want error")
		}
	})
}

// The same change observed twice (a crash and a rerun) must produce the same
// ids; the same transition recurring later (a flapping role) new ones.
func TestComputeIDs(t *testing.T) {
	in := func(rev uint64, from, to string, at time.Time) diff.Input {
		return diff.Input{Source: "veeam", Kind: events.KindVeeam, Complete: true, Observed: at,
			Previous: map[string]diff.Prev{"a": {User: veeam("a", "Enabled", from, "Alpha"), Revision: rev}},
			Snapshot: []events.User{veeam("a", "Enabled", to, "Alpha")}}
	}
	first, _ := diff.Compute(in(3, "A", "B", t0))
	rerun, _ := diff.Compute(in(3, "A", "B", t0.Add(time.Minute)))
	if first.Events[0].ID() != rerun.Events[0].ID() {
		t.Fatal("rerun of the same change got a new id")
	}
	back, _ := diff.Compute(in(4, "B", "A", t0))
	again, _ := diff.Compute(in(5, "A", "B", t0))
	ids := map[string]bool{first.Events[0].ID(): true, back.Events[0].ID(): true, again.Events[0].ID(): true}
	if len(ids) != 3 {
		t.Fatalf("flapping role A→B→A→B reused an id: %v", ids)
	}
}
