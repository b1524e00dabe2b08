package simulation

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// SoakOptions tune a soak: schedules one after another, from FirstSeed on,
// until Duration has passed or Schedules have run.
type SoakOptions struct {
	FirstSeed uint64
	Duration  time.Duration // 0: no limit
	Schedules int           // 0: no limit
	Options
}

// Summary is what a soak did.
type Summary struct {
	Schedules int
	Failed    []Report
	Faults    map[Kind]int
	Changes   int
	Events    int
	Elapsed   time.Duration
}

// Soak runs schedules until the time or the count is used up, or ctx ends,
// calling progress after each.
func Soak(ctx context.Context, o SoakOptions, progress func(Report)) (Summary, error) {
	start := time.Now()
	sum := Summary{Faults: map[Kind]int{}}
	for seed := o.FirstSeed; ; seed++ {
		if o.Schedules > 0 && sum.Schedules >= o.Schedules || o.Duration > 0 && time.Since(start) >= o.Duration || ctx.Err() != nil {
			break
		}
		rep, err := Run(ctx, seed, o.Options)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("seed %d: %w", seed, err)
		}
		sum.Schedules++
		for k, n := range rep.Faults {
			sum.Faults[k] += n
		}
		sum.Changes += rep.Changes
		sum.Events += rep.Events
		if rep.Failed() {
			sum.Failed = append(sum.Failed, rep)
		}
		if progress != nil {
			progress(rep)
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// Print writes the summary as a table: schedules, faults injected by kind,
// violations.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "schedules run: %d in %s (%d directory changes, %d events)\n", s.Schedules, s.Elapsed.Round(time.Second), s.Changes, s.Events)
	fmt.Fprintln(w, "faults injected by kind:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	kinds := slices.Collect(maps.Keys(s.Faults))
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	for _, k := range kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, s.Faults[k])
	}
	_ = tw.Flush()
	violations := 0
	for _, r := range s.Failed {
		violations += len(r.Violations)
	}
	fmt.Fprintf(w, "violations: %d in %d schedules\n", violations, len(s.Failed))
	for _, r := range s.Failed {
		fmt.Fprintf(w, "  seed %d: %s\n    replay: %s\n", r.Seed, strings.Join(first(r.Violations, 3), "\n    "), r.ReplayCommand())
	}
}
