// Review 17c (fixed: the repair clears the entries only for a retirement
// and re-creation pair). The repair of a run that published an
// Apple v2 user's events but crashed before writing its record leaves the
// user's entries "not known" (810b2e7). docs/VPP2.md says "the next run
// records them"; it does only for a key with retired entries. For a key
// without any, the fingerprint leaves the entries out of the stored
// fingerprint (events.User.Digest), so every later listing agrees with the
// record, nothing is written, and the entries stay not known until a
// tracked field changes in a full listing: a retirement and re-creation
// between two polls in that time is reported as a user.updated of the
// status (associated → registered), not as user.retired then
// user.registered. A fix: keep the recorded entries when the published
// events hold no retirement and re-creation pair, or record the reached
// active entry's fingerprint with a count of 0 when the recorded count was
// 0.

package poller

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

func TestReview17cRepairedUserRecreationLater(t *testing.T) {
	user := func(status string, retired int, active string) events.User {
		return events.User{Source: "school", SourceKind: events.KindVPP2, ID: "bob", Email: "bob@x", ClientUserID: "bob",
			Status: status, Entries: &events.V2Entries{Retired: retired, Active: active}}
	}
	run := func(prev events.User, rev uint64, listed events.User, at time.Time) diff.Result {
		t.Helper()
		res, err := diff.Compute(diff.Input{Source: "school", Kind: events.KindVPP2, Complete: true,
			Previous: map[string]diff.Prev{"bob": {User: prev, Revision: rev}}, Snapshot: []events.User{listed}, Observed: at})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	recorded := user(events.StatusRegistered, 0, "a")
	associated := user(events.StatusAssociated, 0, "b")
	first := run(recorded, 3, associated, t0)
	if len(first.Events) != 1 {
		t.Fatalf("association: %d events", len(first.Events))
	}
	d, err := events.DecodeData(first.Events[0])
	if err != nil {
		t.Fatal(err)
	}
	// The crash after publishing; the repair writes what the events reached.
	state, ok := reachedState(recorded, true, []events.Data{d})
	if !ok {
		t.Fatal("nothing reached")
	}
	// Full listings that see bob unchanged write nothing.
	if res := run(state, 4, associated, t0.Add(time.Hour)); len(res.Writes) != 0 || len(res.Events) != 0 {
		t.Logf("a full listing wrote %d records", len(res.Writes))
		if len(res.Writes) == 1 {
			state = res.Writes[0].User
		}
	}
	// bob retired and re-created between two polls.
	res := run(state, 4, user(events.StatusRegistered, 1, "c"), t0.Add(2*time.Hour))
	var types []string
	for _, e := range res.Events {
		types = append(types, e.Type())
	}
	if len(types) != 2 || types[0] != events.TypeRetired || types[1] != events.TypeRegistered {
		t.Errorf("after a repair, bob retired and re-created gave %v, want user.retired then user.registered", types)
	}
}
