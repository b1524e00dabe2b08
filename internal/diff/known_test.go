package diff_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// knownMap is diff.Known as a plain map, as a poller's index holds it.
type knownMap map[string]diff.Entry

func (k knownMap) Len() int { return len(k) }
func (k knownMap) Lookup(id string) (diff.Entry, bool) {
	e, ok := k[id]
	return e, ok
}
func (k knownMap) Range(yield func(string, diff.Gone) bool) {
	for id, e := range k {
		if !yield(id, e.Gone) {
			return
		}
	}
}

type outcome struct {
	IDs     []string
	Writes  []string
	Removed []string
	Known   int
}

func summarise(r diff.Result) outcome {
	o := outcome{Removed: r.Removed, Known: r.Known}
	for _, e := range r.Events {
		o.IDs = append(o.IDs, e.Type()+"/"+e.Subject()+"/"+e.ID())
	}
	for _, w := range r.Writes {
		o.Writes = append(o.Writes, fmt.Sprintf("%s=%s@%d", w.User.ID, w.User.Fingerprint(), w.Revision))
	}
	return o
}

// TestKnownAndPlanAgreeWithFullRecords: a run with only the compact index
// and the records Scan asks for computes exactly what a run with every
// previous record does.
func TestKnownAndPlanAgreeWithFullRecords(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 200 {
		kind := events.KindVPP
		statuses := []string{"Registered", "Associated", "Retired", "removed"}
		if round%2 == 1 {
			kind = events.KindVeeam
			statuses = []string{"Enabled", "Disabled", "removed", "enabled"}
		}
		previous := map[string]diff.Prev{}
		var snapshot []events.User
		for i := range 40 {
			id := fmt.Sprint(i)
			u := events.User{Source: "s", SourceKind: kind, ID: id, Status: statuses[r.IntN(len(statuses))], Role: []string{"A", "a", "B"}[r.IntN(3)], Email: fmt.Sprintf("%d@x", r.IntN(3))}
			if r.IntN(4) > 0 {
				previous[id] = diff.Prev{User: u, Revision: uint64(100 + i)}
			}
			if r.IntN(5) > 0 {
				v := u
				switch r.IntN(4) {
				case 0:
					v.Status = statuses[r.IntN(len(statuses)-1)]
				case 1:
					v.Role = []string{"A", "a", "B"}[r.IntN(3)]
				case 2:
					v.Email = "moved@x"
				}
				snapshot = append(snapshot, v)
			}
		}
		for _, complete := range []bool{false, true} {
			for _, hold := range []bool{false, true} {
				in := diff.Input{Source: "s", Kind: kind, Previous: previous, Snapshot: snapshot, Complete: complete, HoldRemovals: hold, Observed: t0}
				want, err := diff.Compute(in)
				if err != nil {
					t.Fatal(err)
				}
				known := knownMap{}
				for id, p := range previous {
					known[id] = diff.Entry{Revision: p.Revision, Digest: p.User.Digest(), Gone: diff.GoneOf(p.User.Status)}
				}
				in.Known, in.Previous = known, nil
				plan, err := diff.Scan(in)
				if err != nil {
					t.Fatal(err)
				}
				need := plan.Need
				if !hold {
					need = append(need, plan.Missing...)
				}
				in.Previous = map[string]diff.Prev{}
				for _, id := range need {
					in.Previous[id] = previous[id]
				}
				in.Plan = &plan
				got, err := diff.Compute(in)
				if err != nil {
					t.Fatal(err)
				}
				if g, w := summarise(got), summarise(want); !reflect.DeepEqual(g, w) {
					t.Fatalf("round %d complete=%v hold=%v:\n got %+v\nwant %+v", round, complete, hold, g, w)
				}
				if len(plan.Need) > len(snapshot) {
					t.Fatalf("plan needs %d records for %d users", len(plan.Need), len(snapshot))
				}
			}
		}
	}
}

// TestStaleKnownIsCorrectedByRecords: an index entry older than the KV (the
// record it points to changed since) costs a read, never a wrong event.
func TestStaleKnownIsCorrectedByRecords(t *testing.T) {
	now := vpp("1", "Associated", "a@x")
	old := vpp("1", "Registered", "a@x")
	in := diff.Input{Source: "vpp", Kind: events.KindVPP, Snapshot: []events.User{now}, Complete: true, Observed: t0,
		Known:    knownMap{"1": {Revision: 3, Digest: old.Digest()}},
		Previous: map[string]diff.Prev{"1": {User: now, Revision: 7}}}
	r, err := diff.Compute(in)
	if err != nil || len(r.Events) != 0 || len(r.Writes) != 0 {
		t.Fatalf("stale index: %d events, %d writes, %v", len(r.Events), len(r.Writes), err)
	}
}

// SilentNew drops exactly the events of users Previous does not hold, and
// keeps every write.
func TestSilentNew(t *testing.T) {
	previous := prev(3, vpp("1", "Registered", "a@x"), vpp("2", "Associated", "b@x"))
	snapshot := []events.User{vpp("1", "Associated", "a@x"), vpp("3", "Associated", "c@x"), vpp("4", "Registered", "d@x")}
	in := diff.Input{Source: "vpp", Kind: events.KindVPP, Previous: previous, Snapshot: snapshot, Complete: true, Observed: t0}
	loud, err := diff.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	in.SilentNew = true
	quiet, err := diff.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range loud.Events {
		if _, ok := previous[e.Subject()]; ok {
			want = append(want, e.ID())
		}
	}
	var got []string
	for _, e := range quiet.Events {
		got = append(got, e.ID())
	}
	if !reflect.DeepEqual(got, want) || len(quiet.Writes) != len(loud.Writes) || !reflect.DeepEqual(quiet.Removed, loud.Removed) {
		t.Fatalf("silent: events %v writes %d removed %v; want %v, %d, %v", got, len(quiet.Writes), quiet.Removed, want, len(loud.Writes), loud.Removed)
	}
}
