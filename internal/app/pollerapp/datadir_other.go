//go:build !unix

package pollerapp

import "os"

// flock does not lock where flock(2) does not exist: a second poller on
// the same DATA_DIR is then not refused.
func flock(*os.File) error { return nil }
