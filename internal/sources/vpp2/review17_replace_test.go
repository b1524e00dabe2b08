package vpp2_test

import (
	"net/url"
	"slices"
	"testing"
)

// review17 (holds): several users listed retired on page 1 beside a real
// change, their unchanged active entries on page 2: only the real change
// is published (the replaced copies are taken back one by one).
func TestReview17SeveralRetiredThenActiveAcrossPages(t *testing.T) {
	const bobRetired = `{"clientUserId":"bob","email":"bob-old@school.example","status":"Retired"}`
	dave := `{"clientUserId":"dave","email":"dave@school.example","status":"Registered"}`
	daveRetired := `{"clientUserId":"dave","email":"dave-old@school.example","status":"Retired"}`
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive, dave) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		if q.Get("pageIndex") == "" {
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + aliceRetired + `,` + bobRetired + `,` + carolActive + `,` + daveRetired + `]}`
		}
		return 200, `{"currentPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + bobActive + `,` + dave + `,` + aliceActive + `]}`
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.trail(t), []string{"user.registered carol registered -"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
