package vpp2_test

import (
	"net/url"
	"slices"
	"testing"
)

// review17 (holds): a Deleted entry listed before the active one (another
// page) keeps the user active; status spelled in another case is the same
// status ("associated" is Associated, "RETIRED" retires).
func TestReview17DeletedBesideActiveAndStatusCase(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	deleted := `{"clientUserId":"alice","email":"alice@school.example","idHash":"hashOld=","status":"Deleted"}`
	aliceLower := `{"clientUserId":"alice","email":"alice@school.example","idHash":"hashA=","status":"associated"}`
	s.set(func(q url.Values) (int, string) {
		if q.Get("pageIndex") == "" {
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + deleted + `,` + bobActive + `]}`
		}
		return 200, `{"currentPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + aliceLower + `]}`
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	if got := r.trail(t); len(got) != 0 {
		t.Fatalf("events %q, want none", got)
	}
	s.set(func(q url.Values) (int, string) {
		return 200, onePage("v3", aliceActive, `{"clientUserId":"bob","email":"bob@school.example","status":"RETIRED"}`)
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.trail(t), []string{"user.retired bob retired registered"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
