package ops_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/ops"
)

// A taken HTTP_ADDR is the first and only thing a service reports: main
// never starts (so nothing logs "started", "stopped" or "context
// canceled" before the cause), and the error names HTTP_ADDR, the address
// and the system's reason, at once.
func TestIssue15TakenAddressRefusedBeforeMain(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	started := false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	err = ops.RunService(ctx, addr, http.NotFoundHandler(), log, func(ctx context.Context) error {
		started = true
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil {
		t.Fatal("RunService served on a taken address")
	}
	if started {
		t.Error("main ran although the address could not be bound")
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	msg := err.Error()
	for _, want := range []string{"HTTP_ADDR", addr, "address already in use"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Count(msg, addr) != 1 || strings.Contains(msg, "context canceled") {
		t.Errorf("error %q repeats the address or reports a cancellation", msg)
	}
	if logs.Len() > 0 {
		t.Errorf("logged before the cause was returned:\n%s", logs.String())
	}
	// Listen alone says the same, for services that bind before starting
	// anything else.
	if _, err := ops.Listen(addr); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Errorf("Listen = %v", err)
	}
	if ln, err := ops.Listen(""); ln != nil || err != nil {
		t.Errorf("Listen(\"\") = %v, %v; want no listener", ln, err)
	}
}
