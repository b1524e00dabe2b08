package pollerapp

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The DATA_DIR lock dies with its process, kill -9 included: a poller
// killed that way never blocks the next.
func TestIssue15LockFreedByKill(t *testing.T) {
	if dir := os.Getenv("ROLLCALL_ISSUE15_LOCK_DIR"); dir != "" {
		// The child: hold the lock until killed.
		if _, err := lockDataDir(dir); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("locked\n")
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIssue15LockFreedByKill$")
	cmd.Env = append(os.Environ(), "ROLLCALL_ISSUE15_LOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	_, err = lockDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) || !strings.Contains(err.Error(), "DATA_DIR") {
		t.Fatalf("lock held by pid %d: %v", cmd.Process.Pid, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	release, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock not freed by the holder's death: %v", err)
	}
	release()
}
