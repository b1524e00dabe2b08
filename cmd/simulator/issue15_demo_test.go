package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 15 point 6: the demo, logging at info, warns of nothing and
// reports no error from start to a normal stop: not its own loopback
// http:// simulator, not a notifier started before its server, not a
// connection lost because the poller's embedded server stopped first.
func TestIssue15DemoQuiet(t *testing.T) {
	t.Setenv("LOG_LEVEL", "info")
	stdout, stderr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"demo", "-churn", "300ms"}, stdout, stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(stderr.String(), `msg="run complete"`) < 4 || stdout.String() == "" {
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s", err, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no events within 30s:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a normal stop returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not stop")
	}
	if bad := regexp.MustCompile(`(?m)^.*level=(WARN|ERROR).*$`).FindAllString(stderr.String(), -1); len(bad) > 0 {
		t.Errorf("the demo warned or failed:\n%s", strings.Join(bad, "\n"))
	}
	if !strings.Contains(stderr.String(), "seeded") {
		t.Errorf("the first runs do not say they seeded silently:\n%s", stderr)
	}
}
