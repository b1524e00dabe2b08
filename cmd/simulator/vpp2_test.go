package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 17: serve prints the vpp2 source's variables beside the others,
// pointing at the same directory on API v2. (The printed command is run
// as it is by TestIssue15ServePrintsAPollerThatReportsWithinSeconds.)
func TestServePrintsVPP2(t *testing.T) {
	stderr := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-addr", "127.0.0.1:0"}, &syncbuf.Buffer{}, stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "go run ./cmd/poller") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := stderr.String()
	for _, want := range []string{"/mdm/v2 VPP2_STOKEN=", "VPP2_INTERVAL=", "VPP2_FULL_SYNC_INTERVAL="} {
		if !strings.Contains(out, want) {
			t.Errorf("serve did not print %q:\n%s", want, out)
		}
	}
}
