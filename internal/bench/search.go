package bench

import (
	"fmt"

	"github.com/rollcall/rollcall/internal/web"
)

// searchUsers is the directory size per source the console's search is
// measured at (issue 18: within 200 ms at 100k users per source).
const searchUsers = 100_000

// search is scenario 8: the audit console's search (internal/web), over
// an index of searchUsers users in each of two sources, the median of five
// searches of each kind of query. It has no floor: the target is absolute.
func (r *runner) search() {
	rounds := 5
	if r.cfg.Quick {
		rounds = 3
	}
	r.progress("== console search: an index of %s users per source, %d searches of each query", count(searchUsers), rounds)
	for _, t := range web.MeasureSearch(searchUsers, rounds) {
		r.add(Row{Scenario: fmt.Sprintf("8 console search %q", t.Query), Size: count(searchUsers) + "/source", Figure: secs(t.Median),
			Target: "≤200 ms", Result: verdict(t.Median.Milliseconds() <= 200),
			Note: fmt.Sprintf("median of %d; %d users found (the page shows the first ones)", rounds, t.Hits)})
	}
}
