package slack_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sinks/slack"
)

// rateLimitOn answers the nth request (1-based) with 429 and Retry-After
// ra, and every other with 200 "ok".
func rateLimitOn(n int32, ra string) func(slack.Message) reply {
	var seen atomic.Int32
	return func(slack.Message) reply {
		if seen.Add(1) == n {
			return reply{429, ra, "rate_limited"}
		}
		return reply{200, "", "ok"}
	}
}

// checkHeld checks that err is a held Send: retryable, wrapping ErrHeld,
// and asking the notifier to wait at least left (and no longer than the
// whole Retry-After, full).
func checkHeld(t *testing.T, err error, left, full time.Duration) {
	t.Helper()
	if !errors.Is(err, slack.ErrHeld) {
		t.Fatalf("Send: %v, want it to wrap ErrHeld", err)
	}
	retry, after := httpx.Retryable(err)
	if !retry || after < left || after > full {
		t.Errorf("Retryable = %v, %v; want true, at least %v and at most %v (%v)", retry, after, left, full, err)
	}
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Code != 429 || se.Message != "rate_limited" {
		t.Errorf("Send: %#v, want a 429 StatusError carrying Slack's message", se)
	}
}

// TestRateLimitHoldsSink: after a 429 with Retry-After: 2, no other event
// is posted until the 2 seconds have passed; each Send meanwhile fails at
// once with the time left, and posts resume afterwards.
func TestRateLimitHoldsSink(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, rateLimitOn(1, "2"))
	s := newDigestSink(t, rcv.URL, clk, -1) // digests off: every event its own post
	err := s.Send(context.Background(), userEvent(t, 0))
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Code != 429 || se.RetryAfter != 2*time.Second {
		t.Fatalf("first Send: %v, want Slack's 429 with Retry-After 2s", err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		left    time.Duration // 0: the hold is over
	}{
		{"at once", 0, 2 * time.Second},
		{"1.5s later", 1500 * time.Millisecond, 500 * time.Millisecond},
		{"1ms before it passes", 499 * time.Millisecond, time.Millisecond},
		{"when it passes", time.Millisecond, 0},
	}
	posts := 1
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clk.Advance(st.advance)
			err := s.Send(context.Background(), userEvent(t, i+1))
			if st.left == 0 {
				if err != nil {
					t.Fatalf("Send after the hold: %v", err)
				}
				posts++
			} else {
				checkHeld(t, err, st.left, 2*time.Second)
			}
			if got := rcv.count(); got != posts {
				t.Errorf("Slack got %d posts, want %d", got, posts)
			}
		})
	}
}

// TestRateLimitHoldsDigest: a digest due while the hold lasts is not
// posted either; each of its Sends gets the held error, and the sink posts
// again once the hold is over.
func TestRateLimitHoldsDigest(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, rateLimitOn(2, "90")) // longer than the window
	s := newDigestSink(t, rcv.URL, clk, 1)
	if err := s.Send(context.Background(), userEvent(t, 0)); err != nil {
		t.Fatal(err)
	}
	res := sendAsync(context.Background(), s, userEvent(t, 1), userEvent(t, 2)) // over the threshold: a digest
	checkFor(t, "the digest to hold both events", func() bool { return slack.Waiting(s) == 2 })
	m, err := slack.Render(userEvent(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Post(context.Background(), m); err == nil {
		t.Fatal("Post: nil, want Slack's 429")
	}
	clk.Advance(window) // the digest is due, with 30s of the hold left
	for _, c := range res {
		checkHeld(t, result(t, c), 30*time.Second, 90*time.Second)
	}
	if got := rcv.count(); got != 2 {
		t.Errorf("Slack got %d posts, want 2 (the digest held back)", got)
	}
	clk.Advance(30 * time.Second)
	if err := s.Send(context.Background(), userEvent(t, 4)); err != nil {
		t.Fatalf("Send after the hold: %v", err)
	}
	if got := rcv.count(); got != 3 {
		t.Errorf("Slack got %d posts, want 3", got)
	}
}
