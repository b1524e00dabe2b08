package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/cli"
)

// A malformed SIM_* variable stops the simulator with an error naming it,
// instead of quietly serving 0 users or never changing anything.
func TestBadEnvironmentNamed(t *testing.T) {
	tests := []struct{ name, key, value string }{
		{"users", "SIM_USERS", "4O"},
		{"negative users", "SIM_USERS", "-3"},
		{"churn", "SIM_CHURN", "3"},
		{"seed", "SIM_SEED", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.key, tt.value)
			err := run(context.Background(), []string{"serve", "-addr", "127.0.0.1:0"}, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.value) {
				t.Fatalf("%s=%s: %v", tt.key, tt.value, err)
			}
		})
	}
}

// Tokens the operator set are not echoed into the simulator's log; the
// built-in demo tokens are, to be copied.
func TestChosenTokensNotPrinted(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		shown bool
	}{
		{"demo tokens", nil, true},
		{"chosen tokens", []string{"-vpp-stoken", "c2VjcmV0LXN0b2tlbg==", "-veeam-token", "chosen-veeam-token"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			args := append([]string{"serve", "-addr", "127.0.0.1:0", "-churn", "0"}, tt.args...)
			if err := run(ctx, args, &bytes.Buffer{}, &stderr); err != nil {
				t.Fatal(err)
			}
			out := stderr.String()
			if !strings.Contains(out, "VPP_STOKEN=") {
				t.Fatalf("no connection hint printed:\n%s", out)
			}
			for _, secret := range []string{"c2VjcmV0LXN0b2tlbg==", "chosen-veeam-token"} {
				if strings.Contains(out, secret) {
					t.Errorf("chosen token %q printed:\n%s", secret, out)
				}
			}
			if tt.shown && (strings.Contains(out, "$SIM_") || strings.Contains(out, "value>'")) {
				t.Errorf("demo tokens hidden:\n%s", out)
			}
		})
	}
}

// version prints the build and starts nothing (it used to start a server
// on 8080).
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, []string{arg}, &out, &bytes.Buffer{})
		cancel()
		if err != nil || !strings.HasPrefix(out.String(), "simulator ") || !strings.Contains(out.String(), runtime.Version()) {
			t.Fatalf("%s: %v, %q", arg, err, out.String())
		}
	}
}

// help names every command and exits 0; an unknown word or a stray
// argument is a usage error (exit 2) before anything starts — it used to
// start a server on 8080; each command's help shows its real defaults (the
// demo's churn is 2s, not serve's 3s).
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		usage bool   // a usage error
		out   string // in stdout, when not a usage error
	}{
		{args: []string{"help"}, out: "demo"},
		{args: []string{"--help"}, out: "serve"},
		{args: []string{"-h"}, out: "soak"},
		{args: []string{"demo", "--help"}, out: "(default 2s)"},
		{args: []string{"serve", "-h"}, out: "(default 3s)"},
		{args: []string{"soak", "help"}, out: "-duration"},
		{args: []string{"nosuch"}, usage: true},
		{args: []string{"-users", "5", "demo"}, usage: true},
		{args: []string{"serve", "--bogus"}, usage: true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("SIM_CHURN", "")
			os.Unsetenv("SIM_CHURN")
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := run(ctx, tc.args, &out, &bytes.Buffer{})
			var ue *cli.UsageError
			if tc.usage {
				if !errors.As(err, &ue) || !strings.Contains(ue.Usage, "usage: simulator") {
					t.Fatalf("want a usage error with the usage, got %v", err)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("err %v, stdout %q; want %q in it", err, out.String(), tc.out)
			}
		})
	}
}

// bench moved to cmd/bench: the simulator's help lists it only as moved,
// and "simulator bench" is a usage error (exit 2) that points there, before
// anything starts.
func TestBenchMoved(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "\n  bench ") || !strings.Contains(out.String(), "go run ./cmd/bench") {
		t.Errorf("help lists bench as a command or does not say where it went:\n%s", out.String())
	}
	for _, args := range [][]string{{"bench"}, {"bench", "-users", "10k", "-quick"}, {"bench", "--help"}} {
		var stdout bytes.Buffer
		err := run(context.Background(), args, &stdout, &bytes.Buffer{})
		var ue *cli.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "go run ./cmd/bench") || stdout.Len() > 0 {
			t.Errorf("%q: %v, stdout %q; want a usage error naming go run ./cmd/bench", args, err, stdout.String())
		}
	}
}
