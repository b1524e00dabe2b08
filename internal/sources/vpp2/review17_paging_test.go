package vpp2_test

import (
	"net/url"
	"strings"
	"testing"
)

// review17: a full listing whose page 0 says totalPages 3 but whose page 1
// stops (no nextPageIndex) is not a complete listing. Taking it for one
// judges alice on her retired entry of page 0 alone, while her active
// entry is on the page never fetched: a false retirement.
func TestReview17FullListingEndsBeforeTotalPages(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) {
		return 200, onePage("v1", aliceActive, bobActive)
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		if q.Get("clientUserId") != "" {
			if q.Get("clientUserId") == "alice" {
				return 200, onePage("v2", aliceRetired, aliceActive)
			}
			return 200, onePage("v2", bobActive)
		}
		switch q.Get("pageIndex") {
		case "", "0":
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":3,"versionId":"v2","users":[` + aliceRetired + `]}`
		case "1":
			// The last page says there is no next one, though totalPages is 3.
			return 200, `{"currentPageIndex":1,"totalPages":3,"versionId":"v2","users":[` + bobActive + `]}`
		default:
			return 200, `{"currentPageIndex":2,"totalPages":3,"versionId":"v2","users":[` + aliceActive + `]}`
		}
	})
	res, err := r.tryRun()
	got := r.trail(t)
	for _, l := range got {
		if strings.Contains(l, " alice retired") {
			t.Errorf("false retirement of alice from a listing cut at page 2 of 3 (run err %v, complete %v): events %q", err, res.Complete, got)
		}
	}
}
