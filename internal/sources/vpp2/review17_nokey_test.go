package vpp2_test

import (
	"net/url"
	"strings"
	"testing"
)

// review17: an entry without a clientUserId (or an empty one) must not
// hold back every other user of the location run after run (SPEC §1.3:
// no single record blocks a source).
func TestReview17EmptyClientUserIDDoesNotBlockSource(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		return 200, onePage("v2", bobActive, carolActive, `{"clientUserId":"","email":"x@x","status":"Registered"}`)
	})
	for range 2 {
		_, _ = r.tryRun()
	}
	got := r.trail(t)
	if len(got) != 1 || !strings.HasPrefix(got[0], "user.registered carol") {
		t.Errorf("carol's registration held back by one entry without a clientUserId: events %q", got)
	}
}
