package poller_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources"
)

// blockingSrc waits for its context and returns what the context says.
type blockingSrc struct{ fakeSrc }

func (b *blockingSrc) Snapshot(ctx context.Context, _ sources.Request) (sources.Snapshot, error) {
	<-ctx.Done()
	return sources.Snapshot{}, ctx.Err()
}

// TestReview15RunOnceDeadlineIsDeadlineExceeded: bus.WithoutDeadline
// replaces the caller's context with a WithCancelCause child of
// WithoutCancel(ctx); when the caller's deadline passes, that child's Err
// is context.Canceled (only its Cause is DeadlineExceeded). RunOnce then
// reports a run cut by its caller's timeout as "context canceled": a caller
// can no longer tell "my timeout was too short" from "I was stopped", and
// errors.Is(err, context.DeadlineExceeded), the standard check, is false.
// WithoutDeadline should keep ctx.Err() (e.g. a context type whose Err
// returns the parent's Err once done, or cancel with the cause and report
// context.Cause).
func TestReview15RunOnceDeadlineIsDeadlineExceeded(t *testing.T) {
	js, h := rawEnv(t)
	src := &blockingSrc{fakeSrc{name: "v", kind: "veeam", complete: true}}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := p.RunOnce(ctx, "v")
	if err == nil {
		t.Fatal("RunOnce returned no error")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RunOnce under an expired deadline: %v; errors.Is(err, context.DeadlineExceeded) is false", err)
	}
}
