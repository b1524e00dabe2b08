package ops

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// MemoryRatio is the share of a container's memory limit the Go runtime's
// soft limit is set to: the rest is for what the runtime does not count
// (goroutine stacks beyond the heap's accounting, the binary, the kernel's
// buffers).
const MemoryRatio = 0.9

// SetMemoryLimit gives the Go runtime a soft memory limit of MemoryRatio
// (or AUTOMEMLIMIT's ratio) of the container's (cgroup) memory limit,
// unless GOMEMLIMIT is set or AUTOMEMLIMIT=off, and logs the limit in
// force. Without a limit the collector lets garbage grow to about the live
// heap again before it collects, so a poller holding 130 MiB of index would
// peak near twice that during a run of a million users; with one, it
// collects sooner instead of being killed by the kernel. Outside a
// container nothing changes and nothing is logged above debug. An
// AUTOMEMLIMIT that is neither a ratio in (0, 1] nor "off" is an error,
// naming the variable, before anything is set.
func SetMemoryLimit(log *slog.Logger) error {
	ratio := MemoryRatio
	switch v := os.Getenv("AUTOMEMLIMIT"); v {
	case "", "off":
	default:
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0 && r <= 1) {
			return fmt.Errorf("AUTOMEMLIMIT %q: want a share of the container's memory limit in (0, 1], e.g. 0.9, or off", v)
		}
		ratio = r
	}
	limit, err := memlimit.Set(memlimit.WithProvider(memlimit.FromCgroup), memlimit.WithRatio(ratio))
	switch {
	case err != nil:
		log.Debug("no container memory limit found; the Go runtime's memory limit is left as it is", "err", err)
	case limit > 0 && limit < math.MaxInt64:
		log.Info("Go runtime memory limit", "bytes", limit, "mib", limit>>20)
	}
	return nil
}
