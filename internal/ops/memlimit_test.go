package ops

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// An operator's GOMEMLIMIT wins over the container's limit: it is left as
// it is and said once at start.
func TestSetMemoryLimitKeepsGOMEMLIMIT(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "300MiB")
	old := debug.SetMemoryLimit(300 << 20)
	defer debug.SetMemoryLimit(old)
	var buf bytes.Buffer
	if err := SetMemoryLimit(slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("memory limit %d, want 300 MiB kept", got)
	}
	if !strings.Contains(buf.String(), "mib=300") {
		t.Errorf("log %q does not say the limit in force", buf.String())
	}
}

// AUTOMEMLIMIT=off changes nothing and logs nothing above debug.
func TestSetMemoryLimitOff(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("AUTOMEMLIMIT", "off")
	old := debug.SetMemoryLimit(-1)
	var buf bytes.Buffer
	if err := SetMemoryLimit(slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != old {
		t.Errorf("memory limit moved from %d to %d", old, got)
	}
	if old == 1<<63-1 && buf.Len() > 0 {
		t.Errorf("logged %q with no limit in force", buf.String())
	}
}
