package simulation_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/simulation"
)

var (
	seed      = flag.Uint64("sim.seed", 0, "run only the schedule of this seed")
	schedules = flag.Int("sim.schedules", 12, "how many schedules TestSimulation runs (seeds 1…n)")
	firstSeed = flag.Uint64("sim.first", 1, "the first seed TestSimulation runs")
)

var pollerBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "rollcall-sim-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		// Some schedules SIGKILL a real poller process.
		pollerBin = filepath.Join(dir, "poller")
		build := exec.Command("go", "build", "-o", pollerBin, "github.com/rollcall/rollcall/cmd/poller")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "simulation: building the poller binary:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestSimulation runs randomized schedules of changes, faults and crashes
// through the whole pipeline and checks every guarantee against the
// oracle (SPEC §7). -sim.seed=N replays one schedule.
func TestSimulation(t *testing.T) {
	seeds := []uint64{}
	if *seed != 0 {
		seeds = append(seeds, *seed)
	} else {
		for i := range *schedules {
			seeds = append(seeds, *firstSeed+uint64(i))
		}
	}
	if testing.Short() && *seed == 0 {
		seeds = seeds[:min(len(seeds), 2)]
	}
	faults := map[simulation.Kind]int{}
	for _, s := range seeds {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		rep, err := simulation.Run(ctx, s, simulation.Options{PollerBin: pollerBin})
		cancel()
		if err != nil {
			t.Fatalf("seed %d: the harness failed: %v", s, err)
		}
		for k, n := range rep.Faults {
			faults[k] += n
		}
		if rep.Failed() {
			logFile := filepath.Join(os.TempDir(), fmt.Sprintf("rollcall-sim-%d.log", s))
			_ = os.WriteFile(logFile, []byte(rep.FullLog), 0o644)
			t.Errorf("%s\nschedule:\n%s\nwarnings and errors (every line in %s):\n%s", rep, rep.Schedule, logFile, rep.Logs)
			continue
		}
		t.Log(rep)
	}
	t.Logf("faults injected by kind: %v", faults)
}

// The same seed gives the same schedule; different seeds differ.
func TestScheduleIsDeterministic(t *testing.T) {
	for _, s := range []uint64{1, 7, 12345} {
		a, b := simulation.NewSchedule(s, true).String(), simulation.NewSchedule(s, true).String()
		if a != b {
			t.Fatalf("seed %d gave two schedules:\n%s\n%s", s, a, b)
		}
	}
	if simulation.NewSchedule(1, true).String() == simulation.NewSchedule(2, true).String() {
		t.Fatal("seeds 1 and 2 gave the same schedule")
	}
}
