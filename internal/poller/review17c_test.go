package poller

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// Review 17c (holds): after the repair of a run that published an Apple
// v2 user's retirement and re-creation, the user's entries are not known;
// the next full listing of a key with retired entries records them without
// an event, and a retirement and re-creation after that is reported.
func TestReview17cRepairThenFullListingRecordsEntries(t *testing.T) {
	user := func(status string, retired int, active string) events.User {
		return events.User{Source: "school", SourceKind: events.KindVPP2, ID: "k", Email: "k@x", ClientUserID: "k",
			Status: status, Entries: &events.V2Entries{Retired: retired, Active: active}}
	}
	run := func(prev events.User, listed events.User, at time.Time) diff.Result {
		t.Helper()
		res, err := diff.Compute(diff.Input{Source: "school", Kind: events.KindVPP2, Complete: true,
			Previous: map[string]diff.Prev{"k": {User: prev, Revision: 3}}, Snapshot: []events.User{listed}, Observed: at})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	recorded, listed := user(events.StatusAssociated, 0, "a"), user(events.StatusRegistered, 1, "b")
	first := run(recorded, listed, t0)
	var published []events.Data
	for _, e := range first.Events {
		d, err := events.DecodeData(e)
		if err != nil {
			t.Fatal(err)
		}
		published = append(published, d)
	}
	state, ok := reachedState(recorded, true, published)
	if !ok || state.Entries != nil {
		t.Fatalf("repair: ok %v entries %+v, want not known", ok, state.Entries)
	}
	second := run(state, listed, t0.Add(time.Hour))
	if len(second.Events) != 0 || len(second.Writes) != 1 || second.Writes[0].User.Entries == nil {
		t.Fatalf("the full listing after the repair: %d events, writes %+v", len(second.Events), second.Writes)
	}
	third := run(second.Writes[0].User, user(events.StatusRegistered, 2, "c"), t0.Add(2*time.Hour))
	if len(third.Events) != 2 || third.Events[0].Type() != events.TypeRetired || third.Events[1].Type() != events.TypeRegistered {
		t.Errorf("a retirement and re-creation after that gave %d events", len(third.Events))
	}
}
