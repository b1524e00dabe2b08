package poller

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// A run that published an Apple v2 user's retirement and re-creation and
// crashed before writing its state leaves the record with the old memory of
// the key's entries. The repair brings the user to what the events reached;
// kept, the old memory made the next run report the retirement and
// re-creation again, under new event ids (a doubled change). The repaired
// record has its entries not known, which is never a change.
func TestRepairDoesNotReportARecreationTwice(t *testing.T) {
	user := func(retired int, active string) events.User {
		return events.User{Source: "school", SourceKind: events.KindVPP2, ID: "k", Email: "k@x", Status: events.StatusAssociated,
			Entries: &events.V2Entries{Retired: retired, Active: active}}
	}
	recorded, listed := user(0, "a"), user(1, "b")
	run := func(prev events.User, at time.Time) diff.Result {
		t.Helper()
		res, err := diff.Compute(diff.Input{Source: "school", Kind: events.KindVPP2,
			Previous: map[string]diff.Prev{"k": {User: prev, Revision: 3}}, Snapshot: []events.User{listed}, Observed: at})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	first := run(recorded, t0)
	if len(first.Events) < 2 {
		t.Fatalf("the first run reported %d events, want the retirement and re-creation", len(first.Events))
	}
	// The crash: the events are in the stream, the record is not written.
	var published []events.Data
	for _, e := range first.Events {
		d, err := events.DecodeData(e)
		if err != nil {
			t.Fatal(err)
		}
		published = append(published, d)
	}
	reached, ok := reachedState(recorded, true, published)
	if !ok {
		t.Fatal("repair reached no state")
	}
	if again := run(reached, t0.Add(time.Hour)); len(again.Events) != 0 {
		var types []string
		for _, e := range again.Events {
			types = append(types, e.Type())
		}
		t.Fatalf("after the repair the next run reported %v again", types)
	}
}
