package pollerapp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the file below DATA_DIR that a poller with an embedded
// server holds locked while it runs; it contains the holder's process id.
const LockFile = "poller.lock"

// errLocked is the lock held by another process (or another open file of
// this one).
var errLocked = errors.New("locked")

// lockDataDir takes DATA_DIR for this process: two embedded servers on one
// JetStream store would corrupt it. The lock is an flock, which the system
// drops when the process ends, however it ends (kill -9 included), so a
// stale lock file never stops a restart. release unlocks it.
func lockDataDir(dataDir string) (release func(), err error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR %s: %w", dataDir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("DATA_DIR: lock %s: %w", path, err)
		}
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "another process (pid " + strconv.Itoa(pid) + ")"
			}
		}
		return nil, fmt.Errorf("DATA_DIR %s is in use by %s, most likely a second poller: two embedded NATS servers on one store would corrupt it; "+
			"stop that poller, or give this one its own DATA_DIR and EMBEDDED_NATS_LISTEN (or NATS_URL to share a NATS server)", dir, holder)
	}
	// The pid is for the message above; the lock, not the file, decides.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil // closing the file drops the lock
}
