package vpp2_test

import (
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// review17 (holds): a lookup that ignores the filter (answers every user)
// or answers a retired entry is never an absence (the first falls back to
// a second listing, which here shows bob again).
func TestReview17LookupOtherUsersOrRetiredIsNotAbsence(t *testing.T) {
	for _, tc := range []struct{ name, lookup string }{
		{"OtherUsers", onePage("v2", aliceActive, carolActive)},
		{"RetiredEntry", onePage("v2", `{"clientUserId":"bob","email":"bob@school.example","status":"Retired"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newScriptRig(t, 0)
			s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive, carolActive) })
			if _, err := r.tryRun(); err != nil {
				t.Fatal(err)
			}
			var listings atomic.Int32
			s.set(func(q url.Values) (int, string) {
				if q.Get("clientUserId") != "" {
					return 200, tc.lookup
				}
				if listings.Add(1) > 1 {
					// The second listing (if any) shows bob again.
					return 200, onePage("v3", aliceActive, bobActive, carolActive)
				}
				return 200, onePage("v2", aliceActive, carolActive)
			})
			_, _ = r.tryRun()
			if got := r.trail(t); len(got) != 0 {
				t.Errorf("bob retired on a lookup that did not confirm his absence: %q", got)
			}
		})
	}
}

// review17 (holds): 9721 on page 2 of an incremental walk turns the run into
// a full listing; carol, shown on the incremental page 1 and on the full
// listing, is registered exactly once.
func TestReview17VersionRefusedMidIncrementalNoDouble(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		if q.Get("sinceVersionId") != "" {
			if q.Get("pageIndex") == "" {
				return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + carolActive + `]}`
			}
			return 400, `{"errorNumber":9721,"errorMessage":"Invalid versionId"}`
		}
		return 200, onePage("v3", aliceActive, bobActive, carolActive)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("not a full listing after 9721")
	}
	if got, want := r.trail(t), []string{"user.registered carol registered -"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// review17 (holds): a 200 body with errorNumber and users together, and
// an error body without errorNumber, change nothing.
func TestReview17ErrorBodiesWithUsersChangeNothing(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"errorNumber":9602,"errorMessage":"x","currentPageIndex":0,"totalPages":1,"versionId":"v2","users":[]}`,
		`{"errorMessage":"something went wrong","currentPageIndex":0,"totalPages":1,"versionId":"v2","users":[]}`,
		`{"currentPageIndex":0,"totalPages":1,"versionId":"v2"}`,
	} {
		s.set(func(q url.Values) (int, string) { return 200, body })
		if _, err := r.tryRun(); err == nil {
			t.Errorf("no error for %s", body)
		}
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("events %q", got)
	}
}
