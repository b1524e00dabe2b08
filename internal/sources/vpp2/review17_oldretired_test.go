package vpp2_test

import (
	"slices"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// review17: alice (Associated) has an old retired entry with another
// e-mail. Her active entry is retired: that is one change, a retirement,
// yet the rank rollcall uses to pick among retired entries records the
// OLD entry, so the retirement also reports an e-mail change that never
// happened (user.updated alice@ → a-old@).
func TestReview17RetirementPicksOldRetiredEntry(t *testing.T) {
	for _, mode := range []string{"full", "incremental"} {
		t.Run(mode, func(t *testing.T) {
			fullEvery := time.Duration(0)
			if mode == "incremental" {
				fullEvery = time.Hour
			}
			old := vu(0, "alice", vpptest.StatusRetired)
			old.Email = "a-old@school.example"
			r := newRig(t, fullEvery, 1, old, vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered))
			r.run(t)
			r.dir.Put(vu(1, "alice", vpptest.StatusRetired))
			r.run(t)
			if got, want := r.trail(t), []string{"user.retired alice retired associated"}; !slices.Equal(got, want) {
				t.Errorf("events %q, want %q", got, want)
			}
		})
	}
}
