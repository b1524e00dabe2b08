package notifier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/pkg/events"
)

// mkEventAt is mkEvent observed at the given time.
func mkEventAt(t *testing.T, user string, rev uint64, at time.Time) events.Event {
	t.Helper()
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: user, Status: "associated",
		Email: fmt.Sprintf("%s-%d@example.com", user, rev)}
	e, err := events.New(events.Spec{Type: events.TypeUpdated, PrevRevision: rev, User: u, Reason: events.ReasonFields,
		Changes: []events.Change{}, Observed: at})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// With a maximum age, an event older than it is dead-lettered at its first
// failed attempt ("too old"), long before MaxAttempts; a fresh event failing
// the same way is retried and delivered; an old event the sink takes is
// delivered, not dead-lettered.
func TestMaxAgeDeadLettersOldEventOnFailure(t *testing.T) {
	t.Parallel()
	js := setup(t)
	now := time.Now()
	old := mkEventAt(t, "old", 1, now.Add(-2*time.Hour))
	oldOK := mkEventAt(t, "oldok", 1, now.Add(-3*time.Hour))
	fresh := mkEventAt(t, "fresh", 1, now)
	var mu sync.Mutex
	freshFails := 0
	sink := &recSink{name: "aging", script: func(_ int, e events.Event) error {
		switch e.ID() {
		case oldOK.ID():
			return nil
		case fresh.ID():
			mu.Lock()
			defer mu.Unlock()
			if freshFails < 3 {
				freshFails++
				return &httpx.StatusError{Code: 502}
			}
			return nil
		}
		return &httpx.StatusError{Code: 503}
	}}
	start(t, js, notifier.Config{MaxAttempts: 50, MaxAge: time.Hour}, notifier.Route{Sink: sink})
	publish(t, js, old, oldOK, fresh)

	dls := waitDeadLetters(t, js, 1)
	waitDelivered(t, sink, 2)
	waitSettled(t, js, "aging")
	if n := sink.attempts(old.ID()); n != 1 {
		t.Errorf("old failing event attempted %d times, want 1 (dead-lettered at its first failure)", n)
	}
	if n := sink.attempts(fresh.ID()); n != 4 {
		t.Errorf("fresh event attempted %d times, want 4 (three failures, then delivered)", n)
	}
	if got := sink.delivered(); !sameSet(got, []string{oldOK.ID(), fresh.ID()}) {
		t.Errorf("delivered %v, want the old but deliverable and the fresh event", got)
	}
	dls = deadLetters(t, js)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := decodeDeadLetter(t, dls[0])
	if !strings.HasPrefix(dl.Reason, "too old: ") || !strings.Contains(dl.Reason, "1h0m0s") || !strings.Contains(dl.Reason, "503") {
		t.Errorf("reason %q: want too old, naming the maximum age and the last error", dl.Reason)
	}
	if dl.Sink != "aging" || dl.Status != 503 || dl.Attempts != 1 || dl.StreamSeq != 1 {
		t.Errorf("dead letter %+v: want sink aging, status 503, 1 attempt, stream seq 1", dl)
	}
}

// Without a maximum age an old event is retried like any other.
func TestNoMaxAgeRetriesOldEvent(t *testing.T) {
	t.Parallel()
	js := setup(t)
	old := mkEventAt(t, "old", 1, time.Now().Add(-1000*time.Hour))
	sink := &recSink{name: "patient", script: func(n int, e events.Event) error {
		if n <= 2 {
			return &httpx.StatusError{Code: 503}
		}
		return nil
	}}
	start(t, js, notifier.Config{MaxAttempts: 5}, notifier.Route{Sink: sink})
	publish(t, js, old)
	waitDelivered(t, sink, 1)
	waitSettled(t, js, "patient")
	if n := sink.attempts(old.ID()); n != 3 {
		t.Errorf("attempts %d, want 3", n)
	}
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
}

// An event dead-lettered, redriven (its dead letter deleted) and then
// dead-lettered again by the sink's consumer created anew (a replay to the
// sink) gets a new dead letter, even within the dead-letter stream's
// duplicate window: the message id is not just <eventid>.<sink>.
func TestDeadLetteredAgainAfterRedriveIsKept(t *testing.T) {
	t.Parallel()
	js := setup(t)
	e := mkEvent(t, "vpp", "again", events.TypeRetired, 1)
	publish(t, js, e)
	sink := &recSink{name: "refuses", script: func(int, events.Event) error {
		return &httpx.StatusError{Code: 422}
	}}
	route := notifier.Route{Sink: sink, Start: "all"}
	r := start(t, js, notifier.Config{}, route)
	first := waitDeadLetters(t, js, 1)
	waitSettled(t, js, "refuses")
	r.stop()
	wantPrefix := e.ID() + ".refuses.1."
	if id := first[0].Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(id, wantPrefix) {
		t.Errorf("dead letter msg id %q, want %s<consumer epoch>", id, wantPrefix)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, first[0].Sequence); err != nil { // what a redrive does
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, bus.EventsStream, "refuses"); err != nil {
		t.Fatal(err)
	}
	start(t, js, notifier.Config{}, route)
	second := waitDeadLetters(t, js, 1)
	waitSettled(t, js, "refuses")
	if n := sink.attempts(e.ID()); n != 2 {
		t.Errorf("event attempted %d times, want 2 (once per consumer)", n)
	}
	if len(second) != 1 || second[0].Sequence != first[0].Sequence+1 {
		t.Fatalf("dead letters after the replay: %d (first at %d), want one new one", len(second), first[0].Sequence)
	}
	a, b := first[0].Header.Get(jetstream.MsgIDHeader), second[0].Header.Get(jetstream.MsgIDHeader)
	if a == b || !strings.HasPrefix(b, wantPrefix) {
		t.Errorf("msg ids %q then %q, want distinct ids with prefix %s", a, b, wantPrefix)
	}
	if dl := decodeDeadLetter(t, second[0]); dl.Status != 422 || dl.Attempts != 1 {
		t.Errorf("second dead letter %+v", dl)
	}
	if _, err := s.GetMsg(ctx, first[0].Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("first dead letter: %v, want it deleted", err)
	}
}
