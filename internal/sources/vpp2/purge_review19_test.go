package vpp2_test

import (
	"net/url"
	"testing"
	"time"
)

// review19: alice is recorded retired; her retired entry is touched and
// then purged between walk and lookup. The run becomes a full listing
// that no longer lists her: what is published for a user already retired?
func TestReview19HoldsEmptyLookupOfAnAlreadyRetiredUser(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceRetired, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") != "":
			return 200, onePage("v3")
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", aliceRetired)
		}
		return 200, onePage("v3", bobActive)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("not a full listing")
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("a user already retired, purged, gave %q", got)
	}
}
