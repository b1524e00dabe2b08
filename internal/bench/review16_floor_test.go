package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rollcall/rollcall/pkg/events"
)

// The floor is the least work that gives the run's result; its own
// bookkeeping (the churn's sample) must add as little as it can, or the
// run/floor ratios look better than they are. A reservoir of k among n
// users replaces about k·(1+ln(n/k)) entries; the floor's sink clones
// every user's id instead, one allocation per user of the listing (a
// million at 1M) that the run's sink does not make.
func TestReview16FloorSinkAllocatesOnlyForItsSample(t *testing.T) {
	const n, k = 100_000, 1_000
	users := make([]events.User, n)
	for i := range users {
		users[i] = events.User{ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i), Status: "enabled", Role: "r"}
	}
	allocs := testing.AllocsPerRun(3, func() {
		l := simUsers{size: k, rng: rand.New(rand.NewPCG(1, 2)), users: make([]simUser, 0, k)}
		for i := 0; i < n; i += 500 {
			_ = l.Page(users[i : i+500])
		}
	})
	bound := 2 * k * (1 + math.Log(float64(n)/k))
	if allocs > bound {
		t.Errorf("the floor's sink made %.0f allocations for a sample of %d among %d users, want at most %.0f: %.2f per user listed", allocs, k, n, bound, allocs/n)
	}
}
