package vpp2_test

import (
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// review19: a key both active and retired in an incremental walk (alice
// associated, an old retired entry touched) whose lookup lists nothing:
// the run becomes a full listing, and her association is published once,
// not once for the discarded incremental page and once for the listing.
func TestReview19HoldsEmptyLookupOfMixedKeyPublishesOnce(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	aliceReg := `{"clientUserId":"alice","email":"alice@school.example","inviteCode":"0123456789abcdef0123456789abcdef","status":"Registered"}`
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceRetired, aliceReg, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") != "":
			return 200, onePage("v2")
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", aliceActive, aliceRetired)
		}
		return 200, onePage("v2", aliceRetired, aliceActive, bobActive)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("an empty lookup did not make the run a full listing")
	}
	got := r.trail(t)
	if len(got) != 1 || !strings.Contains(got[0], "alice") || !strings.HasPrefix(got[0], "user.associated ") {
		t.Errorf("want alice's association once, got %q", got)
	}
}

// review19: one held key settles by its lookup (bob retired for real), the
// next lists nothing (alice): the full listing settles both, and bob's
// retirement is published exactly once.
func TestReview19HoldsEmptyLookupAfterASettledKeyPublishesOnce(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	bobRetired := strings.Replace(bobActive, `"Registered"`, `"Retired"`, 1)
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") == "alice":
			return 200, onePage("v2")
		case q.Get("clientUserId") == "bob":
			return 200, onePage("v2", bobRetired)
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", aliceRetired, bobRetired)
		}
		return 200, onePage("v2", aliceRetired, aliceActive, bobRetired)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("an empty lookup did not make the run a full listing")
	}
	got := r.trail(t)
	if len(got) != 1 || !strings.HasPrefix(got[0], "user.retired ") || !strings.Contains(got[0], "bob") {
		t.Errorf("want bob retired once and alice untouched, got %q", got)
	}
}

// review19: the full listing an empty lookup starts sees its versionId
// change on page 2 once: it restarts (bounded) and completes, and the
// retirement it shows is published once.
func TestReview19HoldsEmptyLookupThenFullListingRestarts(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	bobRetired := strings.Replace(bobActive, `"Registered"`, `"Retired"`, 1)
	var drifted atomic.Bool
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") != "":
			return 200, onePage("v3")
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", bobRetired)
		}
		if q.Get("pageIndex") == "1" {
			v := "v3"
			if !drifted.Swap(true) {
				v = "v4" // changed under the walk, once
			}
			return 200, `{"currentPageIndex":1,"totalPages":2,"versionId":"` + v + `","users":[` + bobRetired + `]}`
		}
		return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v3","users":[` + aliceActive + `]}`
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("not a full listing")
	}
	got := r.trail(t)
	if len(got) != 1 || !strings.HasPrefix(got[0], "user.retired ") || !strings.Contains(got[0], "bob") {
		t.Errorf("want bob retired once, got %q", got)
	}
}

// review19: the full listing an empty lookup starts fails: the run
// publishes nothing and keeps its cursor, and the next run, with Apple
// healthy, walks from the old cursor again and settles the key.
func TestReview19HoldsEmptyLookupThenFailedFullListingChangesNothing(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	bobRetired := strings.Replace(bobActive, `"Registered"`, `"Retired"`, 1)
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") != "":
			return 200, onePage("v2")
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", bobRetired)
		}
		return 503, `{"errorNumber":9603,"errorMessage":"down"}`
	})
	if _, err := r.tryRun(); err == nil {
		t.Fatal("a run whose full listing failed succeeded")
	}
	if got := r.trail(t); len(got) != 0 {
		t.Fatalf("a failed run published %q", got)
	}
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") == "bob":
			return 200, onePage("v2", bobRetired)
		case q.Get("sinceVersionId") != "":
			if q.Get("sinceVersionId") != "v1" {
				t.Errorf("the failed run moved the cursor: sinceVersionId=%s", q.Get("sinceVersionId"))
			}
			return 200, onePage("v2", bobRetired)
		}
		return 200, onePage("v2", aliceActive, bobRetired)
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	got := r.trail(t)
	if len(got) != 1 || !strings.HasPrefix(got[0], "user.retired ") || !strings.Contains(got[0], "bob") {
		t.Errorf("want bob retired once, got %q", got)
	}
}
