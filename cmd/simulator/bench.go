package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/rollcall/rollcall/internal/bench"
)

// benchCmd runs the benchmarks of issue 7 and prints the table. It fails
// only when something could not be measured or a run over an unchanged
// directory wrote to NATS; timings are reported, never asserted.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator bench", flag.ContinueOnError)
	users := fs.String("users", "10000,100000,1000000", "users per source, comma-separated sizes (10k, 1M allowed)")
	scen := fs.String("scenarios", strings.Join(bench.Scenarios, ","), "scenarios to run, comma-separated")
	srcs := fs.String("sources", "vpp,veeam", "directories the per-size scenarios poll: vpp, veeam or both")
	quick := fs.Bool("quick", false, "measure each figure once and burst 20k events (for CI)")
	reps := fs.Int("reps", 3, "repetitions of each timed figure and floor (the medians are reported)")
	churn := fs.Float64("churn", 0.01, "share of each directory changed before each full run (scenario 1)")
	evs := fs.Int("events", 0, "events in the publish and deliver burst (default 100k, 20k with -quick)")
	conc := fs.Int("concurrency", 16, "webhook deliveries in flight (SINK_CONCURRENCY) and plain POSTs at once")
	inproc := fs.Bool("inprocess", false, "run the simulator in this process (its CPU and memory then count in figures and floors)")
	tmp := fs.String("tmp", os.TempDir(), "directory for the NATS stores")
	cpuprof := fs.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file")
	memprof := fs.String("memprofile", "", "write a heap (allocs) profile at the end to this file")
	md := fs.String("markdown", "", "also write the table as Markdown to this file")
	if err := parseFlags(fs, args, stdout, ""); err != nil {
		return err
	}
	sizes, err := parseSizes(*users)
	if err != nil {
		return err
	}
	cfg := bench.Config{
		Sizes: sizes, Quick: *quick, Reps: *reps, Churn: *churn, Events: *evs, Concurrency: *conc, TempDir: *tmp,
		CPUProfile: *cpuprof, MemProfile: *memprof, Progress: stderr,
	}
	for _, s := range strings.Split(*srcs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Sources = append(cfg.Sources, s)
		}
	}
	for _, s := range strings.Split(*scen, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Scenarios = append(cfg.Scenarios, s)
		}
	}
	if !*inproc {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: cannot find this program to start the simulator: %w (use -inprocess)", err)
		}
		cfg.Start = bench.ChildProcess(exe)
	}
	rep, err := bench.Run(ctx, cfg)
	fmt.Fprintln(stdout)
	rep.Print(stdout)
	if *md != "" {
		f, ferr := os.Create(*md)
		if ferr != nil {
			return errors.Join(err, ferr)
		}
		rep.Markdown(f)
		if ferr := f.Close(); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if failed := rep.Failed(); len(failed) > 0 {
		var names []string
		for _, r := range failed {
			names = append(names, r.Scenario+" at "+r.Size)
		}
		return fmt.Errorf("bench: check failed: %s", strings.Join(names, "; "))
	}
	return nil
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
			return nil, fmt.Errorf("bench: -users: %q is not a positive number of users", f)
		}
		out = append(out, n*mult)
	}
	if len(out) == 0 {
		return nil, errors.New("bench: -users names no size")
	}
	return out, nil
}
