package web

import (
	"fmt"
	"sort"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// SearchQueries are what an administrator types, as the search benchmark
// asks them: a whole e-mail address, a user name, a numeric id, part of a
// name that most users share, and something nobody has.
var SearchQueries = []string{"person54321@school.example", "operator99999", "77777", "erator", "nobody@nowhere.example"}

// SyntheticIndex is an index of n users in each of two sources (vpp and
// veeam), named as the simulator names its users: what the search
// benchmark searches.
func SyntheticIndex(n int) *Index {
	x := NewIndex()
	for i := range n {
		x.PutUser(events.User{Source: "vpp", SourceKind: "vpp", ID: fmt.Sprint(100 + i), Email: fmt.Sprintf("person%d@school.example", 100+i),
			ClientUserID: fmt.Sprintf("client-%d", 100+i), Status: "associated"})
		x.PutUser(events.User{Source: "veeam", SourceKind: "veeam", ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i), Email: fmt.Sprintf("operator%d@msp.example", i),
			UserName: fmt.Sprintf("operator%d", i), FirstName: fmt.Sprintf("Op%d", i), LastName: "Erator", Status: "enabled", Role: "CompanyOwner"})
	}
	return x
}

// SearchTiming is one query's latency: the median of its rounds.
type SearchTiming struct {
	Query  string
	Hits   int
	Median time.Duration
}

// MeasureSearch builds SyntheticIndex(usersPerSource) and times each of
// SearchQueries rounds times (the first search, which builds the index's
// search string, is not counted). cmd/bench reports it.
func MeasureSearch(usersPerSource, rounds int) []SearchTiming {
	x := SyntheticIndex(usersPerSource)
	x.Search("warm-up", 1)
	out := make([]SearchTiming, 0, len(SearchQueries))
	for _, q := range SearchQueries {
		took := make([]time.Duration, 0, rounds)
		hits := 0
		for range max(rounds, 1) {
			start := time.Now()
			_, hits = x.Search(q, searchLimit)
			took = append(took, time.Since(start))
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		out = append(out, SearchTiming{Query: q, Hits: hits, Median: took[len(took)/2]})
	}
	return out
}
