package vpp2_test

import (
	"net/url"
	"strings"
	"testing"
)

// review17 (holds): a record with a 2 MB field (SPEC §1.3: a 2 MB display
// name still gives its events; here a field rollcall does not know, kept
// only in raw) does not hold back the run: carol's registration and the
// big user's are both published, raw capped.
func TestReview17TwoMegabyteFieldGivesEvents(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	big := `{"clientUserId":"big","email":"big@x","note":"` + strings.Repeat("m", 2<<20) + `","status":"Registered"}`
	s.set(func(q url.Values) (int, string) { return 200, onePage("v2", bobActive, carolActive, big) })
	_, err := r.tryRun()
	got := r.trail(t)
	if len(got) != 2 {
		t.Errorf("run err %v; events %d, want 2 (big and carol): %.200q", err, len(got), got)
	}
}
