// Package bench measures rollcall's pipeline against floors taken in the
// same run on the same machine (issue 7): a full run and a steady-state run
// of the real poller against the simulator, publishing a burst of events,
// the notifier delivering them to a webhook, the poller's start-up and the
// memory it keeps per tracked user. `go run ./cmd/bench` prints the table;
// docs/BENCHMARKS.md explains every figure.
//
// Every figure comes from the real packages (poller.RunOnce, bus.Publish,
// notifier.Run with the webhook sink); every floor does the least the same
// work needs (fetching and decoding the same pages, raw JetStream async
// publishes of same-size messages, plain HTTP POSTs of the same bodies).
// Timings are reported, never asserted: the only check that fails a run is
// that a poller run over an unchanged directory writes nothing to NATS,
// counted by the server.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Scenario names, as --scenarios takes them.
const (
	ScenarioRun     = "run"     // 1: full snapshot run with 1% churn
	ScenarioSteady  = "steady"  // 2: steady state, nothing changed
	ScenarioPublish = "publish" // 3: publishing a burst of events
	ScenarioDeliver = "deliver" // 4: the notifier delivering them to a webhook
	ScenarioStartup = "startup" // 5: poller start-up with the users in the KV
	ScenarioMemory  = "memory"  // 6: poller memory per tracked user
	ScenarioNotice  = "notice"  // 7: time from a change at the source to its webhook delivery
	ScenarioSearch  = "search"  // 8: the audit console's search at 100k users per source
)

// SourceKinds are the simulator's directories the per-size scenarios can
// poll, each with the source kind of its name.
var SourceKinds = []string{"vpp", "veeam", "vpp2"}

// Scenarios lists every scenario in the order they run.
var Scenarios = []string{ScenarioSteady, ScenarioRun, ScenarioMemory, ScenarioStartup, ScenarioNotice, ScenarioPublish, ScenarioDeliver, ScenarioSearch}

// Config says what to measure.
type Config struct {
	Sizes     []int    // users per source; default 10k, 100k, 1M
	Scenarios []string // default all
	// Sources names the simulator's directories the per-size scenarios
	// poll: some of "vpp", "veeam" and "vpp2" (the same directory as vpp,
	// on Apple's API v2); default all three.
	Sources []string
	// Quick measures each figure once instead of taking the median of
	// Reps, and bursts 20k events instead of 100k.
	Quick bool
	Reps  int // repetitions of every timed figure and floor; default 3
	// Churn is the share of each directory scenario 1 changes before each
	// measured run; default 0.01 (the 1%).
	Churn float64
	// Events is the burst size of publish and deliver; default 100k.
	Events int
	// Concurrency of the notifier's webhook sink and of the plain POSTs;
	// default 16 (SINK_CONCURRENCY's default).
	Concurrency int
	// Start starts the simulator; default InProcess.
	Start Starter
	// NATSChild, when set, is this program's path: the NATS server then
	// runs in a child process (ServeChild), so that the memory and CPU
	// figures are the poller's or the notifier's alone; empty embeds it in
	// this process, where its heap counts in every figure and floor.
	NATSChild string
	// TempDir holds the NATS stores; default os.TempDir().
	TempDir string
	// CPUProfile and MemProfile, when set, write pprof profiles of the
	// whole benchmark (the memory profile at the end, after a collection).
	CPUProfile string
	MemProfile string
	// Progress receives progress lines (stderr); nil discards them.
	Progress io.Writer
}

// Row is one line of the table.
type Row struct {
	Scenario string
	Size     string
	Figure   string
	Floor    string
	Ratio    string
	Target   string
	Result   string // pass, miss, info, or FAIL (a failed zero-writes check)
	Note     string
}

// Report is a whole run.
type Report struct {
	Rows    []Row
	Machine string
	Took    time.Duration
}

// Failed lists the rows whose check failed (FAIL), as opposed to a missed
// target, which is reported but never fails a run.
func (r Report) Failed() []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Result == "FAIL" {
			out = append(out, row)
		}
	}
	return out
}

// Print writes the table.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s\n\n", r.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsize\tfigure\tfloor\tratio\ttarget\tresult")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Scenario, row.Size, row.Figure, orDash(row.Floor), orDash(row.Ratio), orDash(row.Target), row.Result)
	}
	tw.Flush()
	var notes []string
	for _, row := range r.Rows {
		if row.Note != "" {
			notes = append(notes, fmt.Sprintf("  %s, %s: %s", row.Scenario, row.Size, row.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	fmt.Fprintf(w, "\ntook %s\n", r.Took.Round(time.Second))
}

// Markdown writes the table as a Markdown table.
func (r Report) Markdown(w io.Writer) {
	fmt.Fprintln(w, "| scenario | size | figure | floor | ratio | target | result |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Size, row.Figure, orDash(row.Floor), orDash(row.Ratio), orDash(row.Target), row.Result)
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// Machine describes where the benchmark runs.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s %s/%s, GOMAXPROCS %d", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
}

type runner struct {
	cfg   Config
	start time.Time
	rows  []Row
}

func (r *runner) progress(format string, args ...any) {
	if r.cfg.Progress == nil {
		return
	}
	fmt.Fprintf(r.cfg.Progress, "[%7s] %s\n", time.Since(r.start).Round(time.Second), fmt.Sprintf(format, args...))
}

func (r *runner) add(row Row) {
	r.rows = append(r.rows, row)
	r.progress("  %s %s: %s (floor %s, ratio %s, target %s) %s", row.Scenario, row.Size, row.Figure, orDash(row.Floor), orDash(row.Ratio), orDash(row.Target), row.Result)
}

func (r *runner) want(s string) bool {
	return len(r.cfg.Scenarios) == 0 || slices.Contains(r.cfg.Scenarios, s)
}

// Run measures what cfg asks for. It returns an error if something could
// not be measured; a failed zero-writes check is a row with Result FAIL
// (see Report.Failed), so that the whole table is still printed.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []int{10_000, 100_000, 1_000_000}
	}
	for _, s := range cfg.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return Report{}, fmt.Errorf("unknown scenario %q; want some of %s", s, strings.Join(Scenarios, ","))
		}
	}
	if len(cfg.Sources) == 0 {
		cfg.Sources = SourceKinds
	}
	for _, s := range cfg.Sources {
		if !slices.Contains(SourceKinds, s) {
			return Report{}, fmt.Errorf("unknown source %q; want some of %s", s, strings.Join(SourceKinds, ","))
		}
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 3
	}
	if cfg.Quick {
		cfg.Reps = 1
	}
	if cfg.Events <= 0 {
		cfg.Events = 100_000
		if cfg.Quick {
			cfg.Events = 20_000
		}
	}
	if cfg.Churn <= 0 {
		cfg.Churn = 0.01
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Start == nil {
		cfg.Start = InProcess
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	r := &runner{cfg: cfg, start: time.Now()}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return Report{}, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return Report{}, err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
			r.progress("CPU profile written to %s", cfg.CPUProfile)
		}()
	}
	if cfg.MemProfile != "" {
		liveProfiles.Lock()
		liveProfiles.on = true
		liveProfiles.Unlock()
	}
	err := r.all(ctx)
	if cfg.MemProfile != "" {
		liveProfiles.Lock()
		live := bytes.Clone(liveProfiles.last.Bytes())
		liveProfiles.Unlock()
		if len(live) > 0 {
			if perr := os.WriteFile(cfg.MemProfile+".live", live, 0o644); perr == nil {
				r.progress("heap profile at the last measured work's live peak written to %s.live", cfg.MemProfile)
			}
		}
		if perr := writeMemProfile(cfg.MemProfile); perr != nil {
			err = errors.Join(err, perr)
		} else {
			r.progress("memory profile written to %s", cfg.MemProfile)
		}
	}
	return Report{Rows: r.rows, Machine: Machine(), Took: time.Since(r.start)}, err
}

func writeMemProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

func (r *runner) all(ctx context.Context) error {
	r.progress("rollcall benchmark on %s", Machine())
	perSize := r.want(ScenarioRun) || r.want(ScenarioSteady) || r.want(ScenarioStartup) || r.want(ScenarioMemory) || r.want(ScenarioNotice)
	if perSize {
		for _, n := range r.cfg.Sizes {
			if err := r.size(ctx, n); err != nil {
				return fmt.Errorf("%s users: %w", count(n), err)
			}
		}
	}
	if r.want(ScenarioPublish) || r.want(ScenarioDeliver) {
		if err := r.burst(ctx); err != nil {
			return fmt.Errorf("burst of %s events: %w", count(r.cfg.Events), err)
		}
	}
	if r.want(ScenarioSearch) {
		r.search()
	}
	return nil
}

// count writes 10000 as 10k and 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func secs(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ratio(fig, floor float64) (float64, string) {
	if floor <= 0 {
		return 0, ""
	}
	q := fig / floor
	return q, fmt.Sprintf("%.2f×", q)
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "miss"
}
