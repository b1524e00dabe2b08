package vpp2_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// review17: a user retired and re-created between two polls (the old
// active entry now Retired, a new Registered entry for the same
// clientUserId) is a retirement and a re-registration. Reporting it as a
// mere user.updated loses both changes for consumers that act on
// user.retired / user.registered.
func TestReview17RetiredAndRecreatedBetweenPolls(t *testing.T) {
	for _, mode := range []string{"full", "incremental"} {
		t.Run(mode, func(t *testing.T) {
			fullEvery := time.Duration(0)
			if mode == "incremental" {
				fullEvery = time.Hour
			}
			r := newRig(t, fullEvery, 1, vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered))
			r.run(t)
			r.dir.Put(vu(1, "alice", vpptest.StatusRetired))
			r.dir.Put(vu(9, "alice", vpptest.StatusRegistered))
			r.run(t)
			got := r.trail(t)
			ok := false
			for _, l := range got {
				if strings.HasPrefix(l, "user.registered alice") || strings.HasPrefix(l, "user.retired alice") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("alice retired and re-created between polls gave events %q: neither a retirement nor a registration", got)
			}
		})
	}
}

// review17: a Registered user retired and re-created (a new invitation)
// between two polls: once the invite code is scrubbed the new entry is
// byte-identical to the old one, and nothing at all is published.
func TestReview17RegisteredRetiredAndRecreatedIsSilent(t *testing.T) {
	for _, mode := range []string{"full", "incremental"} {
		t.Run(mode, func(t *testing.T) {
			fullEvery := time.Duration(0)
			if mode == "incremental" {
				fullEvery = time.Hour
			}
			r := newRig(t, fullEvery, 1, vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered))
			r.run(t)
			r.dir.Put(vu(2, "bob", vpptest.StatusRetired))
			r.dir.Put(vu(9, "bob", vpptest.StatusRegistered))
			r.run(t)
			if got := r.trail(t); len(got) == 0 {
				t.Errorf("bob retired and re-registered between polls: no event at all")
			}
		})
	}
}
