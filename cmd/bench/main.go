// Command bench measures rollcall's pipeline at 10k, 100k and 1M users per
// source against floors measured in the same run, and prints the table
// (internal/bench, docs/BENCHMARKS.md):
//
//	go run ./cmd/bench -users 10k -quick   # what CI runs, about 5 seconds
//	go run ./cmd/bench                     # the whole table, about 11 minutes
//
// It starts the simulator and the NATS server as child processes of this
// same program (see bench.ChildProcess and bench.Config.NATSChild), unless
// -inprocess: run with go run or installed, it needs no other binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/rollcall/rollcall/internal/bench"
	"github.com/rollcall/rollcall/internal/cli"
	"github.com/rollcall/rollcall/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if bench.IsChild() {
		// The simulator or NATS server this program started for itself.
		if err := bench.ServeChild(ctx, os.Args[1:], os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const more = `Prints progress on stderr and the table on stdout. Exits 1 if something
could not be measured or a run over an unchanged directory wrote to NATS;
timings are reported, never asserted. docs/BENCHMARKS.md explains the table.
"bench --version" prints the build.
`

// run is the command with its arguments; it returns the exit code: 0, 1
// when the benchmark failed, 2 for a command line it could not parse
// (before anything starts).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "version" || args[0] == "-version" || args[0] == "--version") {
		fmt.Fprintln(stdout, version.Get().String("bench"))
		return 0
	}
	cfg, md, help, err := parse(args, stdout)
	var ue *cli.UsageError
	switch {
	case help:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "bench: %v\n\n%s", err, ue.Usage)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if cfg.Start == nil {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "bench: cannot find this program to start the simulator: %v (use -inprocess)\n", err)
			return 1
		}
		cfg.Start = bench.ChildProcess(exe)
		cfg.NATSChild = exe
	}
	cfg.Progress = stderr
	if err := measure(ctx, cfg, md, stdout); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

// parse reads the command line into the benchmark's configuration (Start
// is bench.InProcess with -inprocess, else nil) and the -markdown file.
// help reports that the usage was printed on stdout.
func parse(args []string, stdout io.Writer) (cfg bench.Config, md string, help bool, err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	users := fs.String("users", "10000,100000,1000000", "users per source, comma-separated sizes (10k, 1M allowed)")
	scen := fs.String("scenarios", strings.Join(bench.Scenarios, ","), "scenarios to run, comma-separated")
	srcs := fs.String("sources", strings.Join(bench.SourceKinds, ","), "directories the per-size scenarios poll: some of "+strings.Join(bench.SourceKinds, ", ")+" (vpp2 is vpp's directory on Apple's API v2)")
	quick := fs.Bool("quick", false, "measure each figure once and burst 20k events (for CI)")
	reps := fs.Int("reps", 3, "repetitions of each timed figure and floor (the medians are reported)")
	churn := fs.Float64("churn", 0.01, "share of each directory changed before each full run (scenario 1)")
	evs := fs.Int("events", 0, "events in the publish and deliver burst (default 100k, 20k with -quick)")
	conc := fs.Int("concurrency", 16, "webhook deliveries in flight (SINK_CONCURRENCY) and plain POSTs at once")
	inproc := fs.Bool("inprocess", false, "run the simulator and the NATS server in this process (their CPU and memory then count in figures and floors)")
	tmp := fs.String("tmp", os.TempDir(), "directory for the NATS stores")
	cpuprof := fs.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file")
	memprof := fs.String("memprofile", "", "write a heap (allocs) profile at the end to this file")
	fs.StringVar(&md, "markdown", "", "also write the table as Markdown to this file")
	if help, err = cli.Parse(fs, args, stdout, more); help || err != nil {
		return cfg, md, help, err
	}
	sizes, err := parseSizes(*users)
	if err != nil {
		return cfg, md, false, &cli.UsageError{Err: err, Usage: cli.Usage(fs, more)}
	}
	cfg = bench.Config{
		Sizes: sizes, Quick: *quick, Reps: *reps, Churn: *churn, Events: *evs, Concurrency: *conc, TempDir: *tmp,
		CPUProfile: *cpuprof, MemProfile: *memprof,
	}
	cfg.Sources = splitList(*srcs)
	cfg.Scenarios = splitList(*scen)
	// Checked here too (bench.Run does), so that a mistyped name exits 2
	// before anything starts.
	for _, s := range cfg.Scenarios {
		if !slices.Contains(bench.Scenarios, s) {
			return cfg, md, false, &cli.UsageError{Err: fmt.Errorf("-scenarios: unknown scenario %q; want some of %s", s, strings.Join(bench.Scenarios, ",")), Usage: cli.Usage(fs, more)}
		}
	}
	for _, s := range cfg.Sources {
		if !slices.Contains(bench.SourceKinds, s) {
			return cfg, md, false, &cli.UsageError{Err: fmt.Errorf("-sources: unknown source %q; want some of %s", s, strings.Join(bench.SourceKinds, ",")), Usage: cli.Usage(fs, more)}
		}
	}
	if *inproc {
		cfg.Start = bench.InProcess
	}
	return cfg, md, false, nil
}

// measure runs the benchmark, prints the table on stdout (and as Markdown
// to md when set), and fails if something could not be measured or a
// check failed.
func measure(ctx context.Context, cfg bench.Config, md string, stdout io.Writer) error {
	rep, err := bench.Run(ctx, cfg)
	fmt.Fprintln(stdout)
	rep.Print(stdout)
	if md != "" {
		f, ferr := os.Create(md)
		if ferr != nil {
			return errors.Join(err, ferr)
		}
		rep.Markdown(f)
		if ferr := f.Close(); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	if err != nil {
		return err
	}
	if failed := rep.Failed(); len(failed) > 0 {
		var names []string
		for _, r := range failed {
			names = append(names, r.Scenario+" at "+r.Size)
		}
		return fmt.Errorf("check failed: %s", strings.Join(names, "; "))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseSizes reads "10000,100k,1M".
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"), strings.HasSuffix(f, "K"):
			mult, f = 1000, f[:len(f)-1]
		case strings.HasSuffix(f, "M"), strings.HasSuffix(f, "m"):
			mult, f = 1_000_000, f[:len(f)-1]
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-users: %q is not a positive number of users", f)
		}
		out = append(out, n*mult)
	}
	if len(out) == 0 {
		return nil, errors.New("-users names no size")
	}
	return out, nil
}
