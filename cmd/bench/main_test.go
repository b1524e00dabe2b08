package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bench"
	"github.com/rollcall/rollcall/internal/simulator"
)

// TestMain lets this test binary play the installed bench binary: started
// by bench.ChildProcess with its own path, it serves the simulator as
// main does.
func TestMain(m *testing.M) {
	if bench.IsChild() {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := bench.ServeChild(ctx, os.Args[1:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("10000, 100k,1M")
	if err != nil || !reflect.DeepEqual(got, []int{10_000, 100_000, 1_000_000}) {
		t.Fatalf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "ten", "-5", "0k"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted it", bad)
		}
	}
}

// Help and the version exit 0 on stdout; an unknown flag, a stray argument
// or a value the benchmark would reject exits 2 with the usage on stderr,
// before anything starts (nothing on stdout: no table).
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout when 0, in stderr when 2
	}{
		{args: []string{"-h"}, out: "-users"},
		{args: []string{"--help"}, out: "-inprocess"},
		{args: []string{"help"}, out: "usage: bench [flags]"},
		{args: []string{"-quick", "--help"}, out: "-quick"},
		{args: []string{"--version"}, out: "bench "},
		{args: []string{"-version"}, out: runtime.Version()},
		{args: []string{"version"}, out: "bench "},
		{args: []string{"--bogus"}, code: 2, out: "flag provided but not defined: -bogus"},
		{args: []string{"serve"}, code: 2, out: `unexpected argument "serve"`},
		{args: []string{"-quick", "extra"}, code: 2, out: `unexpected argument "extra"`},
		{args: []string{"-users", "ten"}, code: 2, out: "-users"},
		{args: []string{"-scenarios", "nosuch"}, code: 2, out: `unknown scenario "nosuch"`},
		{args: []string{"-sources", "ldap"}, code: 2, out: `unknown source "ldap"`},
		{args: []string{"-reps", "x"}, code: 2, out: "invalid value"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code := run(ctx, tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if tc.code == 0 {
				if !strings.Contains(stdout.String(), tc.out) || stderr.Len() > 0 {
					t.Fatalf("stdout %q, stderr %q; want %q in stdout", stdout.String(), stderr.String(), tc.out)
				}
				return
			}
			if stdout.Len() > 0 {
				t.Errorf("a usage error wrote to stdout: %q", stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.out) || !strings.Contains(stderr.String(), "usage: bench [flags]") {
				t.Errorf("stderr %q; want %q and the usage in it", stderr.String(), tc.out)
			}
		})
	}
}

// The simulator runs as a child process of this same program, which needs
// no other binary (this test binary plays the installed bench), and stops
// when asked.
func TestChildProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sim, err := bench.ChildProcess(exe)(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("simulator", sim.Where, "at", sim.URL)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sim.URL+"/api/v3/users", nil)
	req.Header.Set("Authorization", "Bearer "+simulator.DefaultVeeamToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v3/users: %s", resp.Status)
	}
	done := make(chan struct{})
	go func() { sim.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the child did not stop")
	}
	if _, err := http.Get(sim.URL + "/api/v3/users"); err == nil {
		t.Error("the simulator still answers after Stop")
	}
}

// The command as CI runs it, reduced to one cheap scenario: the simulator
// in a child process, the table on stdout, exit 0.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark")
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := run(ctx, []string{"-users", "1k", "-quick", "-scenarios", "steady", "-sources", "vpp", "-tmp", t.TempDir()}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "2 steady vpp: NATS writes") || !strings.Contains(stderr.String(), "child process") {
		t.Errorf("no steady row from a child-process simulator\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
	}
}
