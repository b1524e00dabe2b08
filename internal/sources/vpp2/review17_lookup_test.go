package vpp2_test

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// review17: an incremental run shows only alice's OLD retired entry
// (modified; her active entry did not change). The lookup that should
// settle her answers no entry at all, which contradicts the walk that
// just listed one. Taking the old retired entry as her state would retire
// a user whose active entry is still there, on an answer that is no
// evidence of it. The run becomes a full listing instead, which shows her
// active: nothing is published.
func TestReview17EmptyLookupAfterRetiredOnlyRetires(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") != "":
			return 200, onePage("v2") // no entry: contradicts the walk
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", aliceRetired)
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
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("alice retired on an old retired entry and an empty lookup: %q", got)
	}
}

// An associated user is retired, and her retired entry purged between the
// incremental walk that lists it and the lookup that settles it (the
// demo's churn does this). Keeping her recorded state until the next
// scheduled full listing held the retirement back for up to a day (and
// logged a warning, which CI's quiet-demo test caught): the run becomes a
// full listing, her absence is confirmed, and she is retired in this run.
func TestEmptyLookupOfAPurgedEntryRetiresInTheSameRun(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	aliceNowRetired := strings.Replace(aliceActive, `"Associated"`, `"Retired"`, 1)
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("clientUserId") != "":
			return 200, onePage("v3") // purged since the walk
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", aliceNowRetired)
		}
		return 200, onePage("v3", bobActive)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("an empty lookup did not make the run a full listing")
	}
	got := r.trail(t)
	if len(got) != 1 || !strings.HasPrefix(got[0], "user.retired ") || !strings.Contains(got[0], "alice") {
		t.Errorf("alice, retired and purged between walk and lookup, was not retired in the same run: %q", got)
	}
}
