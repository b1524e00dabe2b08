package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/pkg/events"
)

// The README's first command: the demo prints CloudEvents within 10 seconds
// and stops cleanly when interrupted.
func TestDemoPrintsEventsWithinTenSeconds(t *testing.T) {
	out, errOut := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- run(ctx, []string{"demo", "-churn", "500ms", "-users", "5"}, out, errOut) }()
	for !strings.Contains(out.String(), "\n") {
		if time.Since(start) > 10*time.Second {
			cancel()
			t.Fatalf("no event printed within 10s; stderr:\n%s", errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	var e events.Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("first line is not a CloudEvent: %v\n%s", err, line)
	}
	if err := events.Validate(e); err != nil {
		t.Fatal(err)
	}
	t.Logf("first event after %v: %s %s", time.Since(start).Round(time.Millisecond), e.Type(), e.Subject())
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop within 10s of Ctrl-C")
	}
}
