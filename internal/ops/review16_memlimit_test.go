package ops

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// An AUTOMEMLIMIT the library cannot use (a typo, "false", a ratio above
// 1) leaves the process without the limit the operator meant to tune, and
// SetMemoryLimit says so only at debug level, as "no container memory
// limit found", which is not what happened. It should be said where the
// operator looks, naming AUTOMEMLIMIT: it is refused at start as every bad
// setting is.
func TestReview16BadAUTOMEMLIMITIsReported(t *testing.T) {
	for _, v := range []string{"false", "1.5", "90%"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", "")
			t.Setenv("AUTOMEMLIMIT", v)
			old := debug.SetMemoryLimit(-1)
			defer debug.SetMemoryLimit(old)
			var buf bytes.Buffer
			err := SetMemoryLimit(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
			if err == nil || !strings.Contains(err.Error(), "AUTOMEMLIMIT") {
				t.Errorf("AUTOMEMLIMIT=%s: error %v, log %q; want an error naming AUTOMEMLIMIT", v, err, buf.String())
			}
			if got := debug.SetMemoryLimit(-1); got != old {
				t.Errorf("AUTOMEMLIMIT=%s: the limit moved to %d", v, got)
			}
		})
	}
}
