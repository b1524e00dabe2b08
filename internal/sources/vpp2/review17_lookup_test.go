package vpp2_test

import (
	"net/url"
	"testing"
	"time"
)

// review17: an incremental run shows only alice's OLD retired entry
// (modified; her active entry did not change). The lookup that should
// settle her answers no entry at all, which contradicts the walk that
// just listed one. rollcall then takes the old retired entry as her state
// and retires a user whose active entry is still there: a false
// retirement on an answer that is no evidence of one (the absence rule
// never retires on a single inconsistent answer; this path does).
func TestReview17EmptyLookupAfterRetiredOnlyRetires(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		if q.Get("clientUserId") != "" {
			return 200, onePage("v2") // no entry: contradicts the walk
		}
		return 200, onePage("v2", aliceRetired)
	})
	res, err := r.tryRun()
	if err == nil && res.Complete {
		t.Error("not an incremental run")
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("alice retired on an old retired entry and an empty lookup: %q", got)
	}
}
