package notifier_test

// Adversarial review of issue 13: the wake on recovery, attempt counting,
// and dead letters that keep the original message and never block.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// A lane still sitting out the sink's Retry-After when the sink recovers
// must be woken by that recovery once its Retry-After has passed, not wait
// the whole schedule (here an hour). retryWait reads health.recovered only
// after sleeping the floor, so a recovery during the floor is missed.
func TestRegress13WakeDuringRetryAfterIsMissed(t *testing.T) {
	t.Parallel()
	js := setup(t)
	var up atomic.Bool
	s := &recSink{name: "r13wake", script: func(_ int, e events.Event) error {
		if up.Load() {
			return nil
		}
		if e.Subject() == "a" {
			return &httpx.StatusError{Code: 503, RetryAfter: 2 * time.Second}
		}
		return &httpx.StatusError{Code: 503}
	}}
	start(t, js, notifier.Config{Schedule: []time.Duration{time.Hour}, ProbeEvery: 100 * time.Millisecond},
		notifier.Route{Sink: s})
	a, b, c := mkEvent(t, "vpp", "a", events.TypeUpdated, 1), mkEvent(t, "vpp", "b", events.TypeUpdated, 2), mkEvent(t, "vpp", "c", events.TypeUpdated, 3)
	publish(t, js, a, b, c)
	testutil.CheckFor(t, waitLong, "every user attempted once", func() error {
		for _, e := range []events.Event{a, b, c} {
			if s.attempts(e.ID()) == 0 {
				return fmt.Errorf("%s not attempted", e.Subject())
			}
		}
		return nil
	})
	firstA := s.all()[0].at
	for _, cl := range s.all() {
		if cl.id == a.ID() {
			firstA = cl.at
			break
		}
	}
	up.Store(true) // the sink is back, well within a's Retry-After of 2s
	testutil.CheckFor(t, 6*time.Second, "a delivered once its Retry-After passed", func() error {
		if len(s.delivered()) < 3 {
			return fmt.Errorf("delivered %v; a attempted %d times (Retry-After of 2s ended %s ago, the sink recovered)",
				s.delivered(), s.attempts(a.ID()), time.Since(firstA.Add(2*time.Second)).Round(time.Millisecond))
		}
		return nil
	})
}

// Two users whose deliveries keep failing make the sink "down"; every
// delivery of another user then "recovers" it and wakes them, uncounted.
// With an hour between attempts and MAX_ATTEMPTS 3, a stuck user's event
// is then sent again with every other user's delivery: far more than
// MAX_ATTEMPTS requests, seconds apart instead of the schedule's hour.
func TestRegress13StuckUsersAreHammeredByWakes(t *testing.T) {
	t.Parallel()
	js := setup(t)
	s := &recSink{name: "r13hammer", script: func(_ int, e events.Event) error {
		if strings.HasPrefix(e.Subject(), "stuck") {
			return &httpx.StatusError{Code: 503}
		}
		return nil
	}}
	start(t, js, notifier.Config{Schedule: []time.Duration{time.Hour}, MaxAttempts: 3, ProbeEvery: 10 * time.Second},
		notifier.Route{Sink: s})
	x, y := mkEvent(t, "vpp", "stuckx", events.TypeUpdated, 1), mkEvent(t, "vpp", "stucky", events.TypeUpdated, 2)
	publish(t, js, x, y)
	testutil.CheckFor(t, waitLong, "both stuck users attempted", func() error {
		if s.attempts(x.ID()) == 0 || s.attempts(y.ID()) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Other users' events keep flowing, as they should.
	began := time.Now()
	for i := range 10 {
		publish(t, js, mkEvent(t, "vpp", fmt.Sprintf("ok%d", i), events.TypeUpdated, uint64(10+i)))
		time.Sleep(150 * time.Millisecond)
	}
	waitDelivered(t, s, 10)
	if n := s.attempts(x.ID()); n > 3 {
		t.Fatalf("stuck user's event sent %d times within %s (schedule: 1h between attempts, MAX_ATTEMPTS 3): each other user's delivery woke it, uncounted",
			n, time.Since(began).Round(time.Millisecond))
	}
}

// A dead letter keeps the original message exactly, headers included. A
// NATS header value is bytes; one that is not UTF-8 comes back from
// json.Marshal as U+FFFD, so the dead letter (and a redrive) no longer
// holds the original.
func TestRegress13DeadLetterKeepsBinaryHeaderExactly(t *testing.T) {
	t.Parallel()
	js := setup(t)
	s := &recSink{name: "r13hdr"}
	start(t, js, notifier.Config{}, notifier.Route{Sink: s})
	m := nats.NewMsg(events.SubjectPrefix + "vpp.h1." + events.TypeUpdated)
	const raw = "\xff\xfeok\x80"
	m.Header.Set("X-Raw", raw)
	m.Data = []byte("{not json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	dl := decodeDeadLetter(t, waitDeadLetters(t, js, 1)[0])
	// JSON strings hold only UTF-8: the exact headers are in HeaderBytes.
	h, err := nats.DecodeHeadersMsg(dl.HeaderBytes)
	if err != nil {
		t.Fatalf("dead letter header bytes: %v", err)
	}
	if got := h.Values("X-Raw"); len(got) != 1 || got[0] != raw {
		t.Fatalf("dead letter header X-Raw = %q, want the original bytes %q", got, raw)
	}
}

// A large event (a 900 kB user record) with a long ce-id (30 kB, well
// within the 64 kB of headers JetStream takes, the message within its
// 1 MB) that the sink refuses for good. Its dead letter is cut to the
// maximum payload less 4 kB, but its Nats-Msg-Id holds the 30 kB id, so
// the publish is refused (ErrMaxPayload); the fallback cuts to 16 kB,
// which the id alone (twice in the body) exceeds, so deadLetter retries
// forever and the user's next event never goes out.
func TestRegress13LongIDLargeEventDeadLetterNeverBlocks(t *testing.T) {
	t.Parallel()
	js := setup(t)
	longID := strings.Repeat("i", 30<<10)
	s := &recSink{name: "r13longid", script: func(_ int, e events.Event) error {
		if e.ID() == longID {
			return &httpx.StatusError{Code: 400}
		}
		return nil
	}}
	// Every retry of the store logs the 30 kB id: keep the output short.
	start(t, js, notifier.Config{Logger: slog.New(slog.DiscardHandler)}, notifier.Route{Sink: s})
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "big", Status: "associated", Email: "big@example.com",
		Raw: []byte(`{"blob":"` + strings.Repeat("x", 900<<10) + `"}`)}
	e, err := events.New(events.Spec{Type: events.TypeUpdated, User: u, Reason: events.ReasonFields, Changes: []events.Change{}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set("ce-id", longID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	next := mkEvent(t, "vpp", "big", events.TypeUpdated, 2)
	publish(t, js, next)
	testutil.CheckFor(t, waitLong, "the user's next event delivered", func() error {
		if got := s.delivered(); len(got) != 1 || got[0] != next.ID() {
			return fmt.Errorf("delivered %d events; the poison message was tried %d times and %d dead letters stored",
				len(got), s.attempts(longID), len(deadLetters(t, js)))
		}
		return nil
	})
}
