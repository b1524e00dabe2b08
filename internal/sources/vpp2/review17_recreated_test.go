package vpp2_test

import (
	"net/url"
	"strings"
	"testing"
)

// review17: a user whose entries were all retired and who gets a new
// entry of a status rollcall does not know (counted as active, SPEC §1.4
// via docs/VPP2.md) is re-created: user.registered with previous, as for
// Registered. It comes out as a plain user.updated.
func TestReview17RecreatedWithUnknownActiveStatus(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceRetired, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		return 200, onePage("v2", aliceRetired, bobActive, `{"clientUserId":"alice","email":"alice@school.example","status":"Invited"}`)
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	got := r.trail(t)
	if len(got) == 0 || !strings.HasPrefix(got[0], "user.registered alice") {
		t.Errorf("re-created alice (status Invited) gave %q, want user.registered with previous", got)
	}
}
