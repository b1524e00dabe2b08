package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/rollcall/rollcall/internal/simulation"
)

// soak runs randomized schedules of the whole pipeline against the oracle
// (internal/simulation) for as long as asked, and prints what ran, the
// faults injected by kind and every violation with the command that
// replays it.
func soak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator soak", flag.ContinueOnError)
	duration := fs.Duration("duration", 10*time.Minute, "how long to run schedules (0 = until -schedules)")
	schedules := fs.Int("schedules", 0, "how many schedules to run (0 = until -duration)")
	seed := fs.Uint64("seed", 0, "first seed (0 = one from the clock); schedule n runs seed+n")
	bin := fs.String("poller-bin", "", "poller binary for the schedules that SIGKILL a poller process (default: built with go build; none if that fails)")
	if err := parseFlags(fs, args, stdout, ""); err != nil {
		return err
	}
	if *duration == 0 && *schedules == 0 {
		return errors.New("soak: set -duration or -schedules")
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	if *bin == "" {
		dir, err := os.MkdirTemp("", "rollcall-soak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "poller")
		build := exec.CommandContext(ctx, "go", "build", "-o", *bin, "github.com/rollcall/rollcall/cmd/poller")
		build.Stderr = stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(stderr, "soak: could not build the poller binary (%v); schedules that SIGKILL a poller process run it in this process instead\n", err)
			*bin = ""
		}
	}
	fmt.Fprintf(stderr, "soak: schedules from seed %d for %s\n", *seed, *duration)
	sum, err := simulation.Soak(ctx, simulation.SoakOptions{FirstSeed: *seed, Duration: *duration, Schedules: *schedules,
		Options: simulation.Options{PollerBin: *bin}}, func(r simulation.Report) { fmt.Fprintln(stderr, r) })
	sum.Print(stdout)
	if err != nil {
		return err
	}
	if len(sum.Failed) > 0 {
		return fmt.Errorf("soak: %d of %d schedules broke a guarantee", len(sum.Failed), sum.Schedules)
	}
	return nil
}
