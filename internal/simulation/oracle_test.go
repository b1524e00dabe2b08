package simulation

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

func oracleUser(role string) events.User {
	return events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u1", UserName: "u1", Status: "enabled", Role: role}
}

// TestOracleFalseRemovalAfterReturn (found by the review of issue 12; the check used to pass it): the user was deleted (t1), came
// back (t2) and was present through the whole complete run (t3–t4) that
// retired it (event at t5). That is a false removal (SPEC §6: never
// retired while it is still in the directory), but noFalseRemoval only asks
// for some unmatched deletion before the event, so it passes.
func TestOracleFalseRemovalAfterReturn(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	k := key("veeam", "u1")
	o := observation{
		history: map[string][]record{k: {
			{at: at(0), present: true, user: oracleUser("A")},
			{at: at(1), present: false},
			{at: at(2), present: true, user: oracleUser("A")},
		}},
		stream: []message{{seq: 1, at: at(5), id: "x", typ: events.TypeRetired, key: k, reason: events.ReasonRemoved}},
		runs:   []runObs{{source: "veeam", start: at(3), end: at(4), complete: true, committed: true}},
	}
	if v := noFalseRemoval(o); len(v) == 0 {
		t.Fatal("noFalseRemoval accepts the removal of a user present through the whole run that retired it (it had been deleted once before, and had come back)")
	}
}

// TestOracleLostFlapBack (found by the review of issue 12; the check used to pass it): the role went A → B → A; the return to A
// held through a complete run, but only "registered A" and "updated B" are
// on the stream. everyChangePublished looks for A's digest anywhere on the
// stream, finds the registration, and passes: a lost change.
func TestOracleLostFlapBack(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	k := key("veeam", "u1")
	o := observation{
		history: map[string][]record{k: {
			{at: at(0), present: true, user: oracleUser("A")},
			{at: at(2), present: true, user: oracleUser("B")},
			{at: at(4), present: true, user: oracleUser("A")},
		}},
		stream: []message{
			{seq: 1, at: at(1), id: "r", typ: events.TypeRegistered, key: k, user: oracleUser("A")},
			{seq: 2, at: at(3), id: "b", typ: events.TypeRoleChanged, key: k, user: oracleUser("B")},
		},
		runs: []runObs{{source: "veeam", start: at(5), end: at(6), complete: true, committed: true}},
	}
	var n int
	if v := everyChangePublished(o, &n); len(v) == 0 {
		t.Fatal("everyChangePublished accepts a role flap back to A that no event after the change to B reports")
	}
}
