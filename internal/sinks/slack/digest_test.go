package slack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sinks/sinktest"
	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/pkg/events"
)

const window = time.Minute

// fakeClock is the sink's clock and digest timer. Advance runs the timers
// that fall due before it returns, so a digest due is posted by then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), f: f})
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			due = append(due, t.f)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// receiver is a Slack incoming webhook that records every message posted
// to it and answers what answer says (200 "ok" when answer is nil).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	msgs []slack.Message
}

type reply struct {
	code       int
	retryAfter string
	body       string
}

func newReceiver(t *testing.T, answer func(slack.Message) reply) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m slack.Message
		if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
			w.WriteHeader(400)
			io.WriteString(w, "invalid_payload")
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		a := reply{200, "", "ok"}
		if answer != nil {
			a = answer(m)
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) messages() []slack.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slack.Message(nil), r.msgs...)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func isDigest(m slack.Message) bool { return strings.Contains(m.Text, "directory changes") }

// flatten is every text of m, one per line.
func flatten(m slack.Message) string {
	all := m.Text
	for _, bl := range m.Blocks {
		if bl.Text != nil {
			all += "\n" + bl.Text.Text
		}
		for _, x := range append(bl.Fields, bl.Elements...) {
			all += "\n" + x.Text
		}
	}
	return all
}

// checkFor polls cond until it holds or a few seconds have passed.
func checkFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newDigestSink(t *testing.T, url string, clk *fakeClock, threshold int) *slack.Sink {
	t.Helper()
	s, err := slack.New(slack.Config{WebhookURL: url + sinktest.SecretPath, Timeout: 5 * time.Second,
		DigestThreshold: threshold, DigestWindow: window, DigestUsers: 100, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	slack.SetAfterFunc(s, clk.AfterFunc)
	return s
}

// userEvent is a distinct registration for each i, from vpp for even i
// and veeam for odd i; email(i) names the user in every message.
func userEvent(t testing.TB, i int) events.Event {
	t.Helper()
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: fmt.Sprintf("2079870000%06d", i), Email: email(i), Status: "Registered"}
	if i%2 == 1 {
		u = events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: fmt.Sprintf("c3728f5b-0000-4000-8000-%012d", i), UserName: fmt.Sprintf("user%03d", i), Email: email(i), Status: "enabled", Role: "CompanyUser"}
	}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: sinktest.Observed.Add(time.Duration(i) * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func email(i int) string { return fmt.Sprintf("user%03d@example.com", i) }

// sendAsync starts Send for each event and returns the channels their
// results arrive on.
func sendAsync(ctx context.Context, s *slack.Sink, evs ...events.Event) []chan error {
	out := make([]chan error, len(evs))
	for i, e := range evs {
		out[i] = make(chan error, 1)
		go func() { out[i] <- s.Send(ctx, e) }()
	}
	return out
}

func returned(chs []chan error) int {
	n := 0
	for _, c := range chs {
		n += len(c)
	}
	return n
}

func result(t *testing.T, c chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return")
		return nil
	}
}

func burst(t testing.TB, from, to int) []events.Event {
	var evs []events.Event
	for i := from; i < to; i++ {
		evs = append(evs, userEvent(t, i))
	}
	return evs
}

// countedOnce checks that each of users 0..n-1 appears in exactly one
// message and that the messages count n events in all.
func countedOnce(t *testing.T, msgs []slack.Message, n int) {
	t.Helper()
	total := 0
	for _, m := range msgs {
		if isDigest(m) {
			var k int
			if _, err := fmt.Sscanf(m.Text, "%d directory changes", &k); err != nil {
				t.Fatalf("digest text %q: %v", m.Text, err)
			}
			total += k
		} else {
			total++
		}
	}
	if total != n {
		t.Errorf("messages count %d events, want %d", total, n)
	}
	for i := range n {
		in := 0
		for _, m := range msgs {
			if strings.Contains(flatten(m), email(i)) {
				in++
			}
		}
		if in != 1 {
			t.Errorf("%s is in %d messages, want 1", email(i), in)
		}
	}
}

func TestDigestBelowThreshold(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, nil)
	s := newDigestSink(t, rcv.URL, clk, 10)
	evs := burst(t, 0, 10)
	res := sendAsync(context.Background(), s, evs...)
	for _, c := range res {
		if err := result(t, c); err != nil { // no clock advance: nothing waits
			t.Errorf("Send: %v", err)
		}
	}
	msgs := rcv.messages()
	if len(msgs) != 10 {
		t.Fatalf("%d messages for 10 events, want 10", len(msgs))
	}
	for _, m := range msgs {
		if isDigest(m) {
			t.Errorf("digest below the threshold: %q", m.Text)
		}
	}
	countedOnce(t, msgs, 10)
	if w := slack.Waiting(s); w != 0 {
		t.Errorf("%d events waiting for a digest", w)
	}
}

func TestDigestBurst(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, nil)
	s := newDigestSink(t, rcv.URL, clk, 10)
	res := sendAsync(context.Background(), s, burst(t, 0, 50)...)
	checkFor(t, "10 single messages, 40 events waiting", func() bool {
		return rcv.count() == 10 && slack.Waiting(s) == 40 && returned(res) == 10
	})
	clk.Advance(window)
	for _, c := range res {
		if err := result(t, c); err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	msgs := rcv.messages()
	if len(msgs) > 11 {
		t.Errorf("%d messages for a burst of 50, want at most 11", len(msgs))
	}
	digests := 0
	for _, m := range msgs {
		if isDigest(m) {
			digests++
			if !strings.HasPrefix(m.Text, "40 directory changes: 40 registered (") {
				t.Errorf("digest text %q", m.Text)
			}
		}
	}
	if digests != 1 {
		t.Errorf("%d digests, want 1", digests)
	}
	countedOnce(t, msgs, 50)
}

// TestDigestFollowsTheWindow: the sink keeps digesting while the window
// holds more than the threshold, and posts single messages again once a
// window has passed at or below it.
func TestDigestFollowsTheWindow(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, nil)
	s := newDigestSink(t, rcv.URL, clk, 10)
	ctx := context.Background()
	for _, e := range burst(t, 0, 10) {
		if err := s.Send(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	first := sendAsync(ctx, s, userEvent(t, 10)) // the 11th opens a digest
	checkFor(t, "a digest to open", func() bool { return slack.Waiting(s) == 1 })
	clk.Advance(window / 2)
	rest := sendAsync(ctx, s, burst(t, 11, 50)...)
	checkFor(t, "40 events waiting", func() bool { return slack.Waiting(s) == 40 })
	if rcv.count() != 10 || returned(first) != 0 {
		t.Fatalf("a digest was posted before its window ended")
	}
	clk.Advance(window / 2) // the digest's window ends
	for _, c := range append(first, rest...) {
		if err := result(t, c); err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	if rcv.count() != 11 {
		t.Fatalf("%d messages, want 10 and one digest", rcv.count())
	}

	// The window still holds the 39 sent half a window ago: the burst
	// goes on, so the next event waits for the next digest.
	next := sendAsync(ctx, s, userEvent(t, 50))
	checkFor(t, "the next event to wait", func() bool { return slack.Waiting(s) == 1 })
	clk.Advance(window)
	if err := result(t, next[0]); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := rcv.messages()
	if len(msgs) != 12 || isDigest(msgs[11]) || !strings.Contains(msgs[11].Text, email(50)) {
		t.Fatalf("a digest of one event should be its ordinary message; got %d messages, last %q", len(msgs), msgs[len(msgs)-1].Text)
	}

	// A window has passed with one event: single messages again, at once.
	if err := s.Send(ctx, userEvent(t, 51)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs = rcv.messages()
	want, _ := slack.Render(userEvent(t, 51))
	if len(msgs) != 13 || msgs[12].Text != want.Text {
		t.Fatalf("after a quiet window: %d messages, last %q, want %q", len(msgs), msgs[len(msgs)-1].Text, want.Text)
	}
	countedOnce(t, msgs, 52)
}

// TestDigestFailure: every event of a digest gets the digest post's error.
func TestDigestFailure(t *testing.T) {
	for _, c := range []struct {
		reply reply
		retry bool
		after time.Duration
	}{
		{reply{429, "30", "rate_limited"}, true, 30 * time.Second},
		{reply{500, "", "rollup_error"}, true, 0},
		{reply{400, "", "invalid_blocks"}, false, 0},
	} {
		t.Run(fmt.Sprint(c.reply.code), func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, func(m slack.Message) reply {
				if isDigest(m) {
					return c.reply
				}
				return reply{200, "", "ok"}
			})
			s := newDigestSink(t, rcv.URL, clk, 2)
			ctx := context.Background()
			for _, e := range burst(t, 0, 2) {
				if err := s.Send(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			res := sendAsync(ctx, s, burst(t, 2, 7)...)
			checkFor(t, "5 events waiting", func() bool { return slack.Waiting(s) == 5 })
			clk.Advance(window)
			for _, ch := range res {
				err := result(t, ch)
				var se *httpx.StatusError
				if !errors.As(err, &se) || se.Code != c.reply.code || se.Message != c.reply.body || se.RetryAfter != c.after {
					t.Fatalf("Send: %#v, want the digest's StatusError %d", err, c.reply.code)
				}
				if retry, after := httpx.Retryable(err); retry != c.retry || after != c.after {
					t.Errorf("Retryable = %v, %v; want %v, %v", retry, after, c.retry, c.after)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error %q leaks the webhook URL", err)
				}
			}
			if n := rcv.count(); n != 3 {
				t.Errorf("%d posts, want 2 messages and one digest", n)
			}
		})
	}
}

// TestDigestCancel: a Send whose context ends returns at once and its
// event leaves the digest.
func TestDigestCancel(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, nil)
	s := newDigestSink(t, rcv.URL, clk, 1)
	bg := context.Background()
	if err := s.Send(bg, userEvent(t, 0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	gone := sendAsync(ctx, s, userEvent(t, 1))
	checkFor(t, "the event to wait", func() bool { return slack.Waiting(s) == 1 })
	stay := sendAsync(bg, s, userEvent(t, 2), userEvent(t, 3))
	checkFor(t, "3 events waiting", func() bool { return slack.Waiting(s) == 3 })
	cancel()
	if err := result(t, gone[0]); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Send: %v, want context.Canceled", err)
	}
	if w := slack.Waiting(s); w != 2 {
		t.Errorf("%d events waiting after the cancel, want 2", w)
	}
	if returned(stay) != 0 {
		t.Fatal("the others returned with the cancelled one")
	}
	clk.Advance(window)
	for _, c := range stay {
		if err := result(t, c); err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	msgs := rcv.messages()
	if len(msgs) != 2 || !strings.HasPrefix(msgs[1].Text, "2 directory changes") {
		t.Fatalf("messages %+v, want one single and a digest of 2", msgs)
	}
	d := flatten(msgs[1])
	if strings.Contains(d, email(1)) || !strings.Contains(d, email(2)) || !strings.Contains(d, email(3)) {
		t.Errorf("digest %q: want users 2 and 3, not the cancelled 1", d)
	}

	// A digest left empty is not posted. The window passed: the first
	// event goes out on its own, the second opens a digest.
	if err := s.Send(bg, userEvent(t, 4)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(bg)
	gone = sendAsync(ctx, s, userEvent(t, 5))
	checkFor(t, "the event to wait", func() bool { return slack.Waiting(s) == 1 })
	cancel()
	if err := result(t, gone[0]); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Send: %v, want context.Canceled", err)
	}
	clk.Advance(window)
	if n := rcv.count(); n != 3 {
		t.Errorf("%d messages, want 3: no post for an empty digest", n)
	}
}

// TestDigestRealClock runs the default clock and timers with a short window.
func TestDigestRealClock(t *testing.T) {
	rcv := newReceiver(t, nil)
	s, err := slack.New(slack.Config{WebhookURL: rcv.URL, DigestThreshold: 2, DigestWindow: 200 * time.Millisecond, DigestUsers: 100})
	if err != nil {
		t.Fatal(err)
	}
	res := sendAsync(context.Background(), s, burst(t, 0, 12)...)
	for _, c := range res {
		if err := result(t, c); err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	msgs := rcv.messages()
	digests := 0
	for _, m := range msgs {
		if isDigest(m) {
			digests++
		}
	}
	if digests == 0 || len(msgs) >= 12 {
		t.Errorf("%d messages with %d digests for a burst of 12 over a threshold of 2", len(msgs), digests)
	}
	countedOnce(t, msgs, 12)
}

func TestDigestConfig(t *testing.T) {
	const url = "https://hooks.slack.com/services/T1/B1/SECRETabc"
	s, err := slack.New(slack.Config{WebhookURL: url})
	if err != nil {
		t.Fatal(err)
	}
	if c, d := s.Concurrency(), s.SendTimeout(); c != 256 || d != time.Minute+11*time.Second {
		t.Errorf("defaults: Concurrency %d, SendTimeout %v", c, d)
	}
	s, _ = slack.New(slack.Config{WebhookURL: url, DigestThreshold: 100, DigestWindow: 5 * time.Minute, Timeout: time.Second})
	if c, d := s.Concurrency(), s.SendTimeout(); c != 400 || d != 5*time.Minute+2*time.Second {
		t.Errorf("threshold 100, window 5m: Concurrency %d, SendTimeout %v", c, d)
	}
	// With digests off a Send is one post, bounded by Timeout, which the
	// notifier must allow even above its own send timeout (8s by default).
	s, _ = slack.New(slack.Config{WebhookURL: url, DigestThreshold: -1})
	if c, d := s.Concurrency(), s.SendTimeout(); c != 0 || d != slack.DefaultTimeout {
		t.Errorf("digests off: Concurrency %d, SendTimeout %v", c, d)
	}
	s, _ = slack.New(slack.Config{WebhookURL: url, DigestThreshold: -1, Timeout: 12 * time.Second})
	if d := s.SendTimeout(); d != 12*time.Second {
		t.Errorf("digests off, timeout 12s: SendTimeout %v", d)
	}
	for _, cfg := range []slack.Config{{WebhookURL: url, DigestWindow: -time.Second}, {WebhookURL: url, DigestUsers: -1}} {
		if _, err := slack.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error %q leaks the webhook URL", err)
		}
	}
}

// TestDigestOff: with a negative threshold every event is its own message.
func TestDigestOff(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t, nil)
	s := newDigestSink(t, rcv.URL, clk, -1)
	for _, c := range sendAsync(context.Background(), s, burst(t, 0, 30)...) {
		if err := result(t, c); err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	msgs := rcv.messages()
	if len(msgs) != 30 {
		t.Errorf("%d messages for 30 events with digests off", len(msgs))
	}
	countedOnce(t, msgs, 30)
}

func TestDigestGolden(t *testing.T) {
	var evs []events.Event
	for _, f := range sinktest.Fixtures(t) {
		evs = append(evs, f.Event)
	}
	evs = append(evs, userEvent(t, 1), userEvent(t, 2))
	got, err := json.MarshalIndent(slack.RenderDigest(evs, 4), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "digest.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n got: %s\nwant: %s", path, got, want)
	}
}

// TestDigestLimits: a digest of long names and many sources stays within
// Block Kit's limits, which Slack enforces with invalid_blocks.
func TestDigestLimits(t *testing.T) {
	var evs []events.Event
	for i := range 300 {
		u := events.User{Source: fmt.Sprintf("source%03d", i), SourceKind: events.KindVeeam, ID: fmt.Sprint(i), UserName: strings.Repeat("é", 300) + fmt.Sprint(i), Status: "enabled"}
		e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: sinktest.Observed})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	m := slack.RenderDigest(evs, 100)
	if n := len([]rune(m.Text)); n > 3000 {
		t.Errorf("text of %d characters", n)
	}
	for _, bl := range m.Blocks {
		if bl.Text != nil && len([]rune(bl.Text.Text)) > 3000 {
			t.Errorf("section text of %d characters exceeds 3000", len([]rune(bl.Text.Text)))
		}
		if len(bl.Fields) > 10 {
			t.Errorf("%d fields exceed 10", len(bl.Fields))
		}
		for _, f := range bl.Fields {
			if len([]rune(f.Text)) > 2000 {
				t.Errorf("field of %d characters exceeds 2000", len([]rune(f.Text)))
			}
		}
	}
	if !strings.HasPrefix(m.Text, "300 directory changes: 300 registered") {
		t.Errorf("text %q", m.Text)
	}
}
