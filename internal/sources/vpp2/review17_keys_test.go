package vpp2_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// review17: hostile clientUserIds (2,000 bytes, dots, NATS wildcards, a
// NUL, spaces, a slash) each give their events, and do not hold back the
// others; a change of e-mail is published once per key.
func TestReview17HostileKeysGiveEvents(t *testing.T) {
	keys := []string{strings.Repeat("k", 2000), "a.b.c", "*", ">", "nul\x00key", "sp ace", "sl/ash", "ünï", "bob"}
	entry := func(k, mail string) string {
		b, _ := json.Marshal(map[string]string{"clientUserId": k, "email": mail, "status": "Registered"})
		return string(b)
	}
	list := func(suffix string) []string {
		var out []string
		for i, k := range keys {
			out = append(out, entry(k, fmt.Sprintf("u%d%s@x", i, suffix)))
		}
		return out
	}
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", list("")...) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) { return 200, onePage("v2", list("new")...) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	got := r.trail(t)
	if len(got) != len(keys) {
		t.Errorf("%d events for %d changed users: %q", len(got), len(keys), got)
	}
}
