package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// printedCommand starts serve with args and returns the poller command it
// prints (the lines after "…:\n", up to and including "go run ./cmd/poller").
func printedCommand(t *testing.T, args ...string) string {
	t.Helper()
	simErr := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "-churn", "300ms"}, args...), &syncbuf.Buffer{}, simErr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(simErr.String(), " go run ./cmd/poller\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no poller command printed:\n%s", simErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, cmd, _ := strings.Cut(simErr.String(), ":\n")
	cmd, _, _ = strings.Cut(cmd, " go run ./cmd/poller\n")
	return cmd + " go run ./cmd/poller"
}

// Issue 15 point 9 and the README ("The simulator prints that poller
// command … so that copied as printed it reports changes within seconds"):
// the README's own command ends in `go run ./cmd/poller` (the README's
// promise is nothing installed beyond Go), but serve prints a bare
// `poller`, which a shell with Go alone does not find. Pasted into a shell
// at the repository's root, as the README runs it, it fails at once.
func TestReview15cPrintedCommandRunsWhenPastedIntoAShell(t *testing.T) {
	if _, err := exec.LookPath("poller"); err == nil {
		t.Skip("a poller binary is installed on PATH")
	}
	cmd := printedCommand(t, "-addr", "127.0.0.1:0")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", cmd)
	sh.Dir = root
	// Only where this poller keeps its data and listens, so that it runs
	// beside others (as the existing serve test does).
	sh.Env = append(os.Environ(), "DATA_DIR="+t.TempDir(), "EMBEDDED_NATS_LISTEN=127.0.0.1:0", "HTTP_ADDR=", "LOG_FORMAT=json")
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncbuf.Buffer{}
	sh.Stdout, sh.Stderr = out, out
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	exited, ended := make(chan error, 1), make(chan struct{})
	go func() { exited <- sh.Wait(); close(ended) }()
	defer func() {
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGTERM)
		select {
		case <-ended:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		}
	}()
	deadline := time.After(90 * time.Second)
	for !strings.Contains(out.String(), "poller started") {
		select {
		case err := <-exited:
			t.Fatalf("the printed command, pasted into sh, ended (%v) without a poller:\n%s\n--- command ---\n%s", err, out, cmd)
		case <-deadline:
			t.Fatalf("no poller started within 90s:\n%s", out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serve -addr 0.0.0.0:8080 (or :8080) prints VPP_BASE_URL=http://0.0.0.0:…
// (http://[::]:…). The poller connects to this machine all the same, but
// it is not a loopback host to the poller, which therefore warns that the
// credentials travel in clear text: the command printed "for a poller on
// this machine", copied as printed, starts with a WARN (issue 15 point 6:
// no WARN when the demo connects to its own server).
func TestReview15cPrintedCommandOnAllInterfacesDoesNotWarn(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			cmd := printedCommand(t, "-addr", addr)
			env := map[string]string{}
			for _, w := range strings.Fields(strings.ReplaceAll(strings.TrimSuffix(cmd, " go run ./cmd/poller"), "\\\n", " ")) {
				k, v, _ := strings.Cut(w, "=")
				env[k] = v
			}
			env["DATA_DIR"], env["EMBEDDED_NATS_LISTEN"], env["HTTP_ADDR"], env["LOG_FORMAT"] = t.TempDir(), "127.0.0.1:0", "", "json"
			logs := &syncbuf.Buffer{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- pollerapp.Run(ctx, envconfig.MapLookuper(env), logs) }()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(logs.String(), `"next_run"`) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for l := range strings.Lines(logs.String()) {
				var rec struct{ Level string }
				if json.Unmarshal([]byte(l), &rec) == nil && rec.Level == "WARN" {
					t.Errorf("printed %s; the copied poller warns:\n%s", env["VEEAM_BASE_URL"], l)
				}
			}
		})
	}
}

// With tokens of the operator's choosing, serve prints a placeholder in
// their place, "VPP_STOKEN=<as set by -vpp-stoken or SIM_VPP_STOKEN>":
// unquoted, its < and > are shell redirections. Pasted, the command reads
// a file named "as" (an error, usually) and, where such a file exists,
// runs the builtin `set` with the rest as arguments and creates the files
// "VPP_INTERVAL=2s" and "VEEAM_INTERVAL=2s": no poller, no error. A
// placeholder meant to be pasted must be inert in a shell ('…' quoted, or
// "$SIM_VPP_STOKEN" which even works when the variable was exported).
func TestReview15cPrintedPlaceholderIsInertInAShell(t *testing.T) {
	cmd := printedCommand(t, "-addr", "127.0.0.1:0", "-vpp-stoken", "custom-vpp", "-veeam-token", "custom-veeam")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "as"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// `poller` replaced by `env`, to see what the program would be given.
	sh := exec.Command("bash", "-c", strings.TrimSuffix(cmd, "go run ./cmd/poller")+"env")
	sh.Dir = dir
	out, err := sh.CombinedOutput()
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if err != nil || len(files) != 1 || !strings.Contains(string(out), "VPP_BASE_URL=") {
		t.Errorf("the printed command, pasted into bash, did not run its program (err %v); files now in its directory: %q\noutput: %.300s\n--- command ---\n%s",
			err, files, out, cmd)
	}
}
