package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

const waitLong = 10 * time.Second

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mkEvent(t *testing.T, user, typ string, rev uint64) events.Event {
	t.Helper()
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: user, Status: "associated",
		Email: fmt.Sprintf("%s@example.com", user)}
	e, err := events.New(events.Spec{Type: typ, PrevRevision: rev, User: u, Reason: events.ReasonFields,
		Changes: []events.Change{}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func publish(t *testing.T, js jetstream.JetStream, evs ...events.Event) {
	t.Helper()
	res, err := bus.Publish(ctxT(t), js, evs)
	if err != nil || res.Stored != len(evs) {
		t.Fatalf("publish: %+v, %v", res, err)
	}
}

// refusing is a notifier sink that answers every event with status.
type refusing struct {
	name   string
	status int
}

func (s refusing) Name() string { return s.name }
func (s refusing) Send(context.Context, events.Event) error {
	return &httpx.StatusError{Code: s.status, Message: "rejected by the test"}
}

// deadLetterAll runs a real notifier over the whole event stream with the
// given sinks until each has dead-lettered want of its events, then stops it.
func deadLetterAll(t *testing.T, js jetstream.JetStream, want map[string]int, sinks ...notifier.Sink) {
	t.Helper()
	var routes []notifier.Route
	for _, s := range sinks {
		routes = append(routes, notifier.Route{Sink: s, Start: "all"})
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := notifier.New(js, notifier.Config{MaxAttempts: 2, Backoff: httpx.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		Schedule: []time.Duration{10 * time.Millisecond}, Logger: log}, routes...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("notifier: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("notifier did not stop")
		}
	}()
	testutil.CheckFor(t, waitLong, "condition", func() error {
		for sink, n := range want {
			got, err := deadletter.List(ctxT(t), js, sink)
			if err != nil {
				return err
			}
			if len(got) < n {
				return fmt.Errorf("sink %s: %d of %d dead letters", sink, len(got), n)
			}
		}
		return nil
	})
}

// recorder is a redrive Sender that records what it was given.
type recorder struct {
	mu   sync.Mutex
	ids  []string
	fail func(e events.Event) error
}

func (r *recorder) Send(_ context.Context, e events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, e.ID())
	if r.fail != nil {
		return r.fail(e)
	}
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

func entryIDs(es []deadletter.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.EventID()
	}
	return out
}

func ids(evs ...events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID()
	}
	return out
}

func list(t *testing.T, js jetstream.JetStream, sink string) []deadletter.Entry {
	t.Helper()
	es, err := deadletter.List(ctxT(t), js, sink)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// ---------------------------------------------------------------------------

func TestListWithoutStream(t *testing.T) {
	t.Parallel()
	js := setup(t)
	es, err := deadletter.List(ctxT(t), js, "")
	if err != nil || len(es) != 0 {
		t.Fatalf("List before any notifier ran: %v, %v; want none", es, err)
	}
	st, err := deadletter.Redrive(ctxT(t), js, nil, "", "", nil)
	if err != nil || st.Matched != 0 {
		t.Fatalf("Redrive before any notifier ran: %+v, %v", st, err)
	}
	if _, err := deadletter.List(ctxT(t), js, "a.b"); err == nil {
		t.Error("List accepted a sink name with a dot")
	}
}

// Dead letters written by a real notifier are listed with every field, per
// sink and all together, in stream order.
func TestListShowsNotifierDeadLetters(t *testing.T) {
	t.Parallel()
	js := setup(t)
	a1 := mkEvent(t, "ann", events.TypeRegistered, 1)
	b1 := mkEvent(t, "bob", events.TypeRetired, 1)
	a2 := mkEvent(t, "ann", events.TypeUpdated, 2)
	publish(t, js, a1, b1, a2)
	deadLetterAll(t, js, map[string]int{"strict": 3, "down": 3},
		refusing{name: "strict", status: 400}, refusing{name: "down", status: 503})

	all := list(t, js, "")
	if len(all) != 6 {
		t.Fatalf("%d dead letters, want 6", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("not in stream order: %d after %d", all[i].Seq, all[i-1].Seq)
		}
	}
	strict := list(t, js, "strict")
	if got := entryIDs(strict); !sameSet(got, ids(a1, b1, a2)) {
		t.Errorf("strict dead letters %v, want %v", got, ids(a1, b1, a2))
	}
	byID := map[string]events.Event{a1.ID(): a1, b1.ID(): b1, a2.ID(): a2}
	for _, en := range strict {
		want := byID[en.EventID()]
		if en.Sink != "strict" || en.Status != 400 || en.Attempts != 1 || en.Undecodable ||
			!strings.Contains(en.Reason, "permanent failure") || !strings.Contains(en.Reason, "400") {
			t.Errorf("entry %+v: want sink strict, status 400, 1 attempt, a permanent-failure reason", en)
		}
		if en.At.IsZero() || time.Since(en.At) > time.Minute {
			t.Errorf("entry at %v", en.At)
		}
		if en.StreamSeq < 1 || en.StreamSeq > 3 {
			t.Errorf("entry stream seq %d, want 1..3", en.StreamSeq)
		}
		if en.Event.Type() != want.Type() || en.Event.Subject() != want.Subject() || !bytes.Equal(en.Event.Data(), want.Data()) {
			t.Errorf("entry event %s/%s, want %s/%s", en.Event.Type(), en.Event.Subject(), want.Type(), want.Subject())
		}
		if err := events.Validate(en.Event); err != nil {
			t.Errorf("listed event: %v", err)
		}
	}
	down := list(t, js, "down")
	if len(down) != 3 {
		t.Fatalf("%d dead letters of down, want 3", len(down))
	}
	for _, en := range down {
		if en.Sink != "down" || en.Status != 503 || en.Attempts != 2 || !strings.HasPrefix(en.Reason, "gave up after 2 attempts") {
			t.Errorf("entry %+v: want sink down, status 503, 2 attempts, gave up", en)
		}
	}
	if es := list(t, js, "nosuch"); len(es) != 0 {
		t.Errorf("%d dead letters of an unknown sink", len(es))
	}
}

// A redrive to a sink that works now sends every dead letter once, through
// the real webhook sink with its webhook-id and a valid signature, and
// removes them; a second redrive finds nothing.
func TestRedriveToWorkingWebhook(t *testing.T) {
	t.Parallel()
	js := setup(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	accept := false
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !accept {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := webhook.Verify([]string{secret}, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("signature: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			t.Errorf("decode: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if wid := r.Header.Get("webhook-id"); wid != e.ID() {
			t.Errorf("webhook-id %q, want the event id %s", wid, e.ID())
		}
		if err := events.Validate(*e); err != nil {
			t.Errorf("redriven event: %v", err)
		}
		got = append(got, e.ID())
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	hook, err := webhook.New(webhook.Config{Name: "hook", URL: srv.URL, Secrets: []string{secret}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	evs := []events.Event{mkEvent(t, "u1", events.TypeRegistered, 1), mkEvent(t, "u2", events.TypeRetired, 1), mkEvent(t, "u1", events.TypeUpdated, 2)}
	publish(t, js, evs...)
	deadLetterAll(t, js, map[string]int{"hook": 3}, hook)
	before := list(t, js, "hook")

	mu.Lock()
	accept = true
	mu.Unlock()
	var progress bytes.Buffer
	st, err := deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"hook": hook}, "", "", &progress)
	if err != nil {
		t.Fatalf("redrive: %v\n%s", err, progress.String())
	}
	if st.Matched != 3 || st.Sent != 3 || len(st.Failed) != 0 || st.Skipped() != 0 || len(st.NotRemoved) != 0 {
		t.Errorf("stats %+v, want 3 matched and sent", st)
	}
	mu.Lock()
	received := slices.Clone(got)
	mu.Unlock()
	if !slices.Equal(received, entryIDs(before)) {
		t.Errorf("receiver got %v, want each dead letter once in stream order %v", received, entryIDs(before))
	}
	if !sameSet(received, ids(evs...)) {
		t.Errorf("receiver got %v, want %v", received, ids(evs...))
	}
	if es := list(t, js, ""); len(es) != 0 {
		t.Errorf("%d dead letters left after the redrive", len(es))
	}
	out := progress.String()
	for _, id := range ids(evs...) {
		if !strings.Contains(out, "sent    #") || !strings.Contains(out, id) {
			t.Errorf("progress does not report %s:\n%s", id, out)
		}
	}
	if !strings.Contains(out, "redrive: 3 of 3 sent") {
		t.Errorf("progress has no summary:\n%s", out)
	}

	st, err = deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"hook": hook}, "", "", nil)
	if err != nil || st.Matched != 0 {
		t.Errorf("second redrive: %+v, %v; want nothing to do", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Errorf("receiver got %d requests in all, want 3", len(got))
	}
}

// --id redrives that event's dead letter only; an id that matches nothing
// is an error.
func TestRedriveByID(t *testing.T) {
	t.Parallel()
	js := setup(t)
	evs := []events.Event{mkEvent(t, "a", events.TypeRegistered, 1), mkEvent(t, "b", events.TypeRegistered, 1), mkEvent(t, "c", events.TypeRegistered, 1)}
	publish(t, js, evs...)
	deadLetterAll(t, js, map[string]int{"x": 3, "y": 3}, refusing{name: "x", status: 404}, refusing{name: "y", status: 410})

	rx, ry := &recorder{}, &recorder{}
	sinks := map[string]deadletter.Sender{"x": rx, "y": ry}
	st, err := deadletter.Redrive(ctxT(t), js, sinks, "x", evs[1].ID(), nil)
	if err != nil || st.Matched != 1 || st.Sent != 1 {
		t.Fatalf("redrive --sink x --id: %+v, %v", st, err)
	}
	if got := rx.got(); !slices.Equal(got, []string{evs[1].ID()}) {
		t.Errorf("sink x got %v, want only %s", got, evs[1].ID())
	}
	if got := ry.got(); len(got) != 0 {
		t.Errorf("sink y got %v, want nothing", got)
	}
	if got := entryIDs(list(t, js, "x")); !sameSet(got, ids(evs[0], evs[2])) {
		t.Errorf("x left %v, want the other two", got)
	}
	if got := list(t, js, "y"); len(got) != 3 {
		t.Errorf("y left %d, want 3", len(got))
	}

	// The id without a sink: that event's dead letter of every sink.
	st, err = deadletter.Redrive(ctxT(t), js, sinks, "", evs[0].ID(), nil)
	if err != nil || st.Matched != 2 || st.Sent != 2 {
		t.Fatalf("redrive --id: %+v, %v", st, err)
	}
	if got := ry.got(); !slices.Equal(got, []string{evs[0].ID()}) {
		t.Errorf("sink y got %v", got)
	}
	if n := len(list(t, js, "")); n != 3 {
		t.Errorf("%d dead letters left, want 3", n)
	}

	st, err = deadletter.Redrive(ctxT(t), js, sinks, "", "0123456789abcdef", nil)
	if !errors.Is(err, deadletter.ErrNoMatch) || st.Matched != 0 {
		t.Errorf("unknown id: %+v, %v; want ErrNoMatch", st, err)
	}
	if _, err := deadletter.Redrive(ctxT(t), js, sinks, "x", evs[1].ID(), nil); !errors.Is(err, deadletter.ErrNoMatch) {
		t.Errorf("an id already redriven: %v, want ErrNoMatch", err)
	}
}

// A sink that still fails keeps its dead letters as they were, and the
// redrive says which failed and why.
func TestRedriveStillFailingKeeps(t *testing.T) {
	t.Parallel()
	js := setup(t)
	evs := []events.Event{mkEvent(t, "p", events.TypeRetired, 1), mkEvent(t, "q", events.TypeRetired, 1)}
	publish(t, js, evs...)
	deadLetterAll(t, js, map[string]int{"flaky": 2}, refusing{name: "flaky", status: 400})
	before := list(t, js, "")

	// The second one fails; the first goes through.
	rec := &recorder{fail: func(e events.Event) error {
		if e.ID() == before[1].EventID() {
			return &httpx.StatusError{Code: 503, Message: "still down"}
		}
		return nil
	}}
	var progress bytes.Buffer
	st, err := deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"flaky": rec}, "", "", &progress)
	if !errors.Is(err, deadletter.ErrFailed) {
		t.Errorf("redrive with a failure: %v, want ErrFailed", err)
	}
	if st.Matched != 2 || st.Sent != 1 || len(st.Failed) != 1 {
		t.Fatalf("stats %+v", st)
	}
	f := st.Failed[0]
	if f.Seq != before[1].Seq || f.Sink != "flaky" || f.EventID != before[1].EventID() || !strings.Contains(f.Reason, "503") {
		t.Errorf("failure %+v", f)
	}
	after := list(t, js, "")
	if len(after) != 1 {
		t.Fatalf("%d left, want 1", len(after))
	}
	a, b := after[0], before[1]
	if a.Seq != b.Seq || a.Attempts != b.Attempts || a.Status != b.Status || a.Reason != b.Reason || !a.At.Equal(b.At) || a.EventID() != b.EventID() {
		t.Errorf("kept dead letter changed: %+v, was %+v", a, b)
	}
	out := progress.String()
	if !strings.Contains(out, "failed  #") || !strings.Contains(out, "503") || !strings.Contains(out, "redrive: 1 of 2 sent, 1 failed and kept") {
		t.Errorf("progress:\n%s", out)
	}
	if !strings.Contains(err.Error(), "1 of 2") {
		t.Errorf("error %q does not count the failures", err)
	}

	// All failing: nothing sent, nothing removed.
	down := &recorder{fail: func(events.Event) error { return errors.New("connection refused") }}
	st, err = deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"flaky": down}, "", "", nil)
	if !errors.Is(err, deadletter.ErrFailed) || st.Sent != 0 || len(st.Failed) != 1 {
		t.Errorf("all failing: %+v, %v", st, err)
	}
	if n := len(list(t, js, "")); n != 1 {
		t.Errorf("%d left, want 1", n)
	}
}

// Dead letters of a sink that is no longer configured are reported and
// left alone; the others are redriven; the sink filter holds.
func TestRedriveUnknownSinkAndFilter(t *testing.T) {
	t.Parallel()
	js := setup(t)
	evs := []events.Event{mkEvent(t, "m", events.TypeRegistered, 1), mkEvent(t, "n", events.TypeRegistered, 1)}
	publish(t, js, evs...)
	deadLetterAll(t, js, map[string]int{"keep": 2, "gone": 2, "other": 2},
		refusing{name: "keep", status: 400}, refusing{name: "gone", status: 400}, refusing{name: "other", status: 400})

	keep, other := &recorder{}, &recorder{}
	sinks := map[string]deadletter.Sender{"keep": keep, "other": other}
	// The sink filter: only keep's.
	st, err := deadletter.Redrive(ctxT(t), js, sinks, "keep", "", nil)
	if err != nil || st.Matched != 2 || st.Sent != 2 {
		t.Fatalf("redrive --sink keep: %+v, %v", st, err)
	}
	if len(other.got()) != 0 || len(list(t, js, "other")) != 2 || len(list(t, js, "gone")) != 2 {
		t.Errorf("the sink filter let other sinks' dead letters through")
	}
	if !sameSet(keep.got(), ids(evs...)) {
		t.Errorf("keep got %v", keep.got())
	}

	var progress bytes.Buffer
	st, err = deadletter.Redrive(ctxT(t), js, sinks, "", "", &progress)
	if err != nil {
		t.Fatalf("an unknown sink made the redrive fail: %v", err)
	}
	if st.Matched != 4 || st.Sent != 2 || st.UnknownSinks["gone"] != 2 || st.Skipped() != 2 {
		t.Errorf("stats %+v", st)
	}
	if got := list(t, js, ""); len(got) != 2 || got[0].Sink != "gone" || got[1].Sink != "gone" {
		t.Errorf("left %v, want gone's two", entryIDs(got))
	}
	out := progress.String()
	if !strings.Contains(out, "skipped #") || !strings.Contains(out, "sink gone is not configured") ||
		!strings.Contains(out, "2 left for sink gone, which is not configured") {
		t.Errorf("progress:\n%s", out)
	}
}

// A message on the event stream that was no event is dead-lettered with
// its raw body: listed, never sent.
func TestUndecodableDeadLetter(t *testing.T) {
	t.Parallel()
	js := setup(t)
	m := nats.NewMsg("rollcall.events.vpp.x.user.updated")
	m.Data = []byte("not an event")
	if _, err := js.PublishMsg(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	deadLetterAll(t, js, map[string]int{"picky": 1}, refusing{name: "picky", status: 400})
	es := list(t, js, "picky")
	if len(es) != 1 || !es[0].Undecodable || string(es[0].Raw) != "not an event" || es[0].EventID() != "" ||
		!strings.Contains(es[0].Reason, "undecodable") {
		t.Fatalf("entries %+v", es)
	}
	var buf bytes.Buffer
	deadletter.Print(&buf, es)
	if !strings.Contains(buf.String(), "picky") {
		t.Errorf("print:\n%s", buf.String())
	}
	rec := &recorder{}
	st, err := deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"picky": rec}, "", "", nil)
	if !errors.Is(err, deadletter.ErrFailed) || len(st.Failed) != 1 || len(rec.got()) != 0 {
		t.Errorf("redrive of an undecodable dead letter: %+v, %v, sent %v", st, err, rec.got())
	}
	if n := len(list(t, js, "")); n != 1 {
		t.Errorf("%d left, want 1", n)
	}
}

// A dead letter that is not a notifier.DeadLetter at all is listed, not an
// error.
func TestGarbledDeadLetterListed(t *testing.T) {
	t.Parallel()
	js := setup(t)
	if err := bus.EnsureDeadLetter(ctxT(t), js, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctxT(t), bus.DeadLetterPrefix+"hand", []byte("{oops")); err != nil {
		t.Fatal(err)
	}
	es := list(t, js, "")
	if len(es) != 1 || es[0].Sink != "hand" || !es[0].Undecodable || !strings.Contains(es[0].Reason, "unreadable") || es[0].At.IsZero() {
		t.Fatalf("entries %+v", es)
	}
}

func TestPrint(t *testing.T) {
	t.Parallel()
	js := setup(t)
	e := mkEvent(t, "carol", events.TypeRoleChanged, 1)
	publish(t, js, e)
	deadLetterAll(t, js, map[string]int{"hook": 1}, refusing{name: "hook", status: 400})
	es := list(t, js, "")
	// A long reason is cut.
	es = append(es, deadletter.Entry{Seq: 99, Sink: "slack", Attempts: 10, Status: 0, At: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Event: e, Reason: "gave up after 10 attempts: " + strings.Repeat("very long\nreason ", 20)})
	var buf bytes.Buffer
	deadletter.Print(&buf, es)
	out := buf.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want header, 2 rows and a count:\n%s", len(lines), out)
	}
	for _, col := range []string{"SEQ", "TIME", "SINK", "EVENT", "TYPE", "USER", "ATTEMPTS", "STATUS", "REASON"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header %q lacks %s", lines[0], col)
		}
	}
	row := strings.Fields(lines[1])
	want := []string{"1", es[0].At.UTC().Format(time.RFC3339), "hook", e.ID(), events.TypeRoleChanged, "vpp/carol", "<carol@example.com>", "1", "400", "permanent"}
	if len(row) < len(want) || !slices.Equal(row[:len(want)], want) {
		t.Errorf("row %q, want it to start with %q", lines[1], want)
	}
	if !strings.Contains(lines[2], "2025-03-01T12:00:00Z") || !strings.Contains(lines[2], " - ") || !strings.HasSuffix(lines[2], "…") {
		t.Errorf("row with no status and a long reason: %q", lines[2])
	}
	if strings.Count(lines[2], "very long") > 5 {
		t.Errorf("reason not cut: %q", lines[2])
	}
	if lines[3] != "2 dead letter(s)" {
		t.Errorf("last line %q", lines[3])
	}
	buf.Reset()
	deadletter.Print(&buf, nil)
	if buf.String() != "no dead letters\n" {
		t.Errorf("empty: %q", buf.String())
	}
}

// A dead letter removed meanwhile (another redrive sent it at the same
// time) counts as sent and removed, not as a failure.
func TestRedriveDeadLetterAlreadyRemoved(t *testing.T) {
	t.Parallel()
	js := setup(t)
	e := mkEvent(t, "r", events.TypeRegistered, 1)
	publish(t, js, e)
	deadLetterAll(t, js, map[string]int{"hook": 1}, refusing{name: "hook", status: 400})
	es := list(t, js, "")
	s, err := js.Stream(ctxT(t), bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{fail: func(events.Event) error {
		return s.DeleteMsg(ctxT(t), es[0].Seq)
	}}
	st, err := deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"hook": rec}, "", "", nil)
	if err != nil || st.Sent != 1 || len(st.NotRemoved) != 0 {
		t.Errorf("redrive of a dead letter removed meanwhile: %+v, %v", st, err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
