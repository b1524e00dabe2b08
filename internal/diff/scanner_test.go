package diff_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// planSummary is a Plan in a form independent of the order users arrived.
type planSummary struct {
	Changed         []string
	Need, Missing   []string
	Known           int
	Users, Active   int
	RawsOfChanged   []string
	ChangedStatuses []string
}

func summarisePlan(p diff.Plan) planSummary {
	s := planSummary{Need: slices.Sorted(slices.Values(p.Need)), Missing: p.Missing, Known: p.Known, Users: p.Users, Active: p.Active}
	cs := slices.Clone(p.Changed)
	slices.SortFunc(cs, func(a, b events.User) int { return strings.Compare(a.ID, b.ID) })
	for _, u := range cs {
		s.Changed = append(s.Changed, u.ID+"="+u.Fingerprint())
		s.RawsOfChanged = append(s.RawsOfChanged, string(u.Raw))
	}
	return s
}

// A listing handed over page by page — with later copies of users that
// moved under the pager (Replace) and listings started again (Restart) —
// plans exactly what Scan plans over the listing as it finally stood: the
// last walk, each user as its last copy had it.
func TestScannerAgreesWithScanOfTheFinalListing(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	statuses := []string{"Enabled", "Disabled", "removed", "enabled"}
	for round := range 500 {
		known := knownMap{}
		var base []events.User
		for i := range 30 {
			u := events.User{Source: "s", SourceKind: events.KindVeeam, ID: fmt.Sprint(i), Status: statuses[r.IntN(4)], Role: []string{"A", "B"}[r.IntN(2)]}
			if r.IntN(3) > 0 {
				known[u.ID] = diff.Entry{Revision: uint64(10 + i), Digest: u.Digest(), Gone: diff.GoneOf(u.Status)}
			}
			base = append(base, u)
		}
		vary := func(u events.User) events.User {
			switch r.IntN(4) {
			case 0:
				u.Status = statuses[r.IntN(4)]
			case 1:
				u.Role = []string{"A", "B", "C"}[r.IntN(3)]
			}
			u.Raw = []byte(fmt.Sprintf(`{"copy":%d}`, r.IntN(1000)))
			return u
		}
		complete := r.IntN(2) == 0
		s := diff.NewScanner("s", known, false)
		var final []events.User // the listing as it finally stood
		place := map[string]int{}
		walks := 1 + r.IntN(3)
		for w := range walks {
			if w > 0 {
				s.Restart()
				final, place = nil, map[string]int{}
			}
			var page []events.User
			flush := func() {
				if err := s.Page(page); err != nil {
					t.Fatal(err)
				}
				page = nil
			}
			for _, u := range base {
				if r.IntN(6) == 0 {
					continue // not in this walk
				}
				v := vary(u)
				if _, dup := place[v.ID]; dup {
					continue
				}
				place[v.ID] = len(final)
				final = append(final, v)
				page = append(page, v)
				if r.IntN(5) == 0 {
					flush()
				}
				if r.IntN(8) == 0 && len(final) > 0 {
					// A later copy of a user listed before (or in this very
					// page, delivered once the page is).
					flush()
					c := vary(final[r.IntN(len(final))])
					if err := s.Replace(c); err != nil {
						t.Fatal(err)
					}
					final[place[c.ID]] = c
				}
			}
			flush()
		}
		got := summarisePlan(s.Finish(complete))
		want, err := diff.Scan(diff.Input{Source: "s", Kind: events.KindVeeam, Known: known, Snapshot: final, Complete: complete})
		if err != nil {
			t.Fatal(err)
		}
		if w := summarisePlan(want); !reflect.DeepEqual(got, w) {
			t.Fatalf("round %d (walks %d, complete %v):\n got %+v\nwant %+v", round, walks, complete, got, w)
		}
	}
}

// The scanner keeps only the users a run can publish or store; with
// keepAll (a first listing, the baseline) every user. A kept user's raw
// record is its own copy, not a view into the page it came in.
func TestScannerKeepsOnlyChanges(t *testing.T) {
	a := events.User{ID: "a", Status: "Enabled", Role: "A"}
	b := events.User{ID: "b", Status: "Enabled", Role: "A"}
	known := knownMap{"a": {Revision: 1, Digest: a.Digest()}, "b": {Revision: 2, Digest: b.Digest()}}
	body := []byte(`{"id":"a"}{"id":"b2"}`)
	b2 := b
	b2.Role, b2.Raw = "B", body[10:]
	a.Raw = body[:10]
	s := diff.NewScanner("s", known, false)
	if err := s.Page([]events.User{a, b2}); err != nil {
		t.Fatal(err)
	}
	p := s.Finish(true)
	if len(p.Changed) != 1 || p.Changed[0].ID != "b" {
		t.Fatalf("changed %v, want b only", p.Changed)
	}
	body[11] = 'X'
	if string(p.Changed[0].Raw) != `{"id":"b2"}` {
		t.Errorf("the kept raw record shares the page's buffer: %s", p.Changed[0].Raw)
	}
	all := diff.NewScanner("s", known, true)
	if err := all.Page([]events.User{a, b2}); err != nil {
		t.Fatal(err)
	}
	if p := all.Finish(true); len(p.Changed) != 2 {
		t.Errorf("keepAll kept %d users, want 2", len(p.Changed))
	}
	if err := s.Page([]events.User{a}); err == nil {
		t.Error("a user listed twice by Page was accepted")
	}
}
