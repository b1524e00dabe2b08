package notifier_test

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// fast keeps the notifier's own retries quick, and fastSchedule the
// delivery retries: ten attempts, as the tests were written for.
var (
	fast         = httpx.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	fastSchedule = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond,
		50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
)

const waitLong = 10 * time.Second

// ---------------------------------------------------------------------------
// helpers

// setup starts an embedded JetStream server and creates rollcall's stream.
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

// mkEvent builds a valid event; rev makes each id unique within a test.
func mkEvent(t *testing.T, source, user, typ string, rev uint64) events.Event {
	t.Helper()
	kind := events.KindVPP
	if source == "veeam" {
		kind = events.KindVeeam
	}
	u := events.User{Source: source, SourceKind: kind, ID: user, Status: "associated",
		Email: fmt.Sprintf("%s-%d@example.com", user, rev)}
	e, err := events.New(events.Spec{Type: typ, PrevRevision: rev, User: u, Reason: events.ReasonFields,
		Changes: []events.Change{}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func publish(t *testing.T, js jetstream.JetStream, evs ...events.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := bus.Publish(ctx, js, evs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != len(evs) {
		t.Fatalf("stored %d of %d events (%d duplicates)", res.Stored, len(evs), res.Duplicates)
	}
}

func ids(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID()
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runner is a notifier running in a goroutine.
type runner struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	exited bool
	err    error
}

// start runs a notifier and waits until every route's consumer exists. The
// notifier is stopped (and checked to stop promptly) when the test ends.
func start(t *testing.T, js jetstream.JetStream, cfg notifier.Config, routes ...notifier.Route) *runner {
	t.Helper()
	if cfg.Backoff == (httpx.Backoff{}) {
		cfg.Backoff = fast
	}
	if cfg.Schedule == nil {
		cfg.Schedule = fastSchedule
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	n := notifier.New(js, cfg, routes...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	t.Cleanup(r.stop)
	for _, rt := range routes {
		name := rt.Sink.Name()
		testutil.CheckFor(t, waitLong, "condition", func() error {
			r.poll()
			if r.exited {
				return fmt.Errorf("Run returned early: %v", r.err)
			}
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer ccancel()
			_, err := js.Consumer(cctx, bus.EventsStream, name)
			return err
		})
	}
	return r
}

func (r *runner) poll() {
	if r.exited {
		return
	}
	select {
	case r.err = <-r.done:
		r.exited = true
	default:
	}
}

// stop cancels the notifier and asserts that Run returns promptly and
// without error.
func (r *runner) stop() {
	r.once.Do(func() {
		r.t.Helper()
		r.cancel()
		r.poll()
		if !r.exited {
			select {
			case r.err = <-r.done:
				r.exited = true
			case <-time.After(3 * time.Second):
				r.t.Errorf("Run did not return within 3s of cancel")
				return
			}
		}
		if r.err != nil {
			r.t.Errorf("Run: %v", r.err)
		}
	})
}

type call struct {
	id   string
	user string
	at   time.Time
	err  error
}

// recSink records every Send and answers with script (nil = deliver).
type recSink struct {
	name   string
	script func(n int, e events.Event) error // n counts calls from 1
	mu     sync.Mutex
	calls  []call
}

func (s *recSink) Name() string { return s.name }

func (s *recSink) Send(ctx context.Context, e events.Event) error {
	s.mu.Lock()
	n := len(s.calls) + 1
	s.calls = append(s.calls, call{id: e.ID(), user: e.Subject(), at: time.Now()})
	s.mu.Unlock()
	var err error
	if s.script != nil {
		err = s.script(n, e)
	}
	s.mu.Lock()
	s.calls[n-1].err = err
	s.mu.Unlock()
	return err
}

func (s *recSink) all() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// delivered lists the ids of successful sends, in order.
func (s *recSink) delivered() []string {
	var out []string
	for _, c := range s.all() {
		if c.err == nil {
			out = append(out, c.id)
		}
	}
	return out
}

func (s *recSink) attempts(id string) int {
	n := 0
	for _, c := range s.all() {
		if c.id == id {
			n++
		}
	}
	return n
}

func waitDelivered(t *testing.T, s *recSink, n int) {
	t.Helper()
	testutil.CheckFor(t, waitLong, "condition", func() error {
		if got := len(s.delivered()); got < n {
			return fmt.Errorf("sink %s: %d of %d events delivered", s.name, got, n)
		}
		return nil
	})
}

func consumerInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, bus.EventsStream, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitSettled waits until the sink's consumer has nothing pending or
// unacknowledged.
func waitSettled(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	testutil.CheckFor(t, waitLong, "condition", func() error {
		info := consumerInfo(t, js, name)
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("consumer %s: NumAckPending %d, NumPending %d", name, info.NumAckPending, info.NumPending)
		}
		return nil
	})
}

// deadLetters returns every message on the dead-letter stream.
func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func waitDeadLetters(t *testing.T, js jetstream.JetStream, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	var got []*jetstream.RawStreamMsg
	testutil.CheckFor(t, waitLong, "condition", func() error {
		got = deadLetters(t, js)
		if len(got) < n {
			return fmt.Errorf("%d of %d dead letters", len(got), n)
		}
		return nil
	})
	return got
}

func decodeDeadLetter(t *testing.T, m *jetstream.RawStreamMsg) notifier.DeadLetter {
	t.Helper()
	var dl notifier.DeadLetter
	if err := json.Unmarshal(m.Data, &dl); err != nil {
		t.Fatalf("dead letter body %q: %v", m.Data, err)
	}
	return dl
}

// userOf is the lane an event belongs to: its source and user.
func userOf(e events.Event) string { return e.Source() + " " + e.Subject() }

// checkPerUser asserts that got (ids in the order the sink took them) holds
// every event of want exactly once and nothing else, and that each user's
// events came in want's order. Events of different users may interleave in
// any way: deliveries run concurrently across users.
func checkPerUser(t *testing.T, label string, got []string, want []events.Event) {
	t.Helper()
	user := map[string]string{}
	wantPer := map[string][]string{}
	for _, e := range want {
		user[e.ID()] = userOf(e)
		wantPer[userOf(e)] = append(wantPer[userOf(e)], e.ID())
	}
	seen := map[string]int{}
	gotPer := map[string][]string{}
	for _, id := range got {
		seen[id]++
		u, ok := user[id]
		if !ok {
			t.Errorf("%s: received unexpected event %s", label, id)
			continue
		}
		gotPer[u] = append(gotPer[u], id)
	}
	for _, e := range want {
		if seen[e.ID()] != 1 {
			t.Errorf("%s: event %s received %d times, want once", label, e.ID(), seen[e.ID()])
		}
	}
	for u, w := range wantPer {
		if !slices.Equal(gotPer[u], w) {
			t.Errorf("%s: user %s received\n%v\nwant (publish order)\n%v", label, u, gotPer[u], w)
		}
	}
}

// ---------------------------------------------------------------------------
// 1

func TestDeliversEveryEventOnceInUserOrderToWebhook(t *testing.T) {
	t.Parallel()
	js := setup(t)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ce-Id") == "" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("not a binary-mode CloudEvent: headers %v", r.Header)
		}
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			t.Errorf("decode request: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := events.Validate(*e); err != nil {
			t.Errorf("received invalid event: %v", err)
		}
		mu.Lock()
		got = append(got, e.ID())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	sink, err := webhook.New(webhook.Config{Name: "hook", URL: srv.URL + "/in", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start(t, js, notifier.Config{}, notifier.Route{Sink: sink})

	var evs []events.Event
	for i := range 12 {
		evs = append(evs, mkEvent(t, []string{"vpp", "veeam"}[i%2], fmt.Sprintf("u%d", i%3), events.Types[i%len(events.Types)], uint64(i+1)))
	}
	publish(t, js, evs[:5]...)
	publish(t, js, evs[5:]...)

	testutil.CheckFor(t, waitLong, "condition", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < len(evs) {
			return fmt.Errorf("received %d of %d", len(got), len(evs))
		}
		return nil
	})
	waitSettled(t, js, "hook")
	info := consumerInfo(t, js, "hook")
	if info.AckFloor.Stream != uint64(len(evs)) {
		t.Errorf("ack floor %d, want %d", info.AckFloor.Stream, len(evs))
	}
	mu.Lock()
	defer mu.Unlock()
	checkPerUser(t, "webhook", got, evs)
}

// ---------------------------------------------------------------------------
// 2

func TestAckOnlyAfterDelivery(t *testing.T) {
	t.Parallel()
	js := setup(t)
	var pendingAtSuccess int = -1
	sink := &recSink{name: "flaky"}
	sink.script = func(n int, e events.Event) error {
		if n <= 2 {
			return &httpx.StatusError{Code: 503}
		}
		// The message must still be unacknowledged while its delivery is
		// under way.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, err := js.Consumer(ctx, bus.EventsStream, "flaky"); err == nil {
			if info, err := c.Info(ctx); err == nil {
				pendingAtSuccess = info.NumAckPending
			}
		}
		return nil
	}
	start(t, js, notifier.Config{}, notifier.Route{Sink: sink})
	e := mkEvent(t, "vpp", "1", events.TypeAssociated, 1)
	publish(t, js, e)

	waitDelivered(t, sink, 1)
	waitSettled(t, js, "flaky")
	if got := sink.delivered(); !slices.Equal(got, []string{e.ID()}) {
		t.Errorf("delivered %v, want exactly [%s]", got, e.ID())
	}
	if n := sink.attempts(e.ID()); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
	if pendingAtSuccess != 1 {
		t.Errorf("NumAckPending during the successful delivery = %d, want 1 (acked before delivery?)", pendingAtSuccess)
	}
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
}

// ---------------------------------------------------------------------------
// 3

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	js := setup(t)
	const wait = 300 * time.Millisecond
	sink := &recSink{name: "limited", script: func(n int, e events.Event) error {
		if n == 1 {
			return &httpx.StatusError{Code: 429, RetryAfter: wait}
		}
		return nil
	}}
	start(t, js, notifier.Config{}, notifier.Route{Sink: sink})
	publish(t, js, mkEvent(t, "vpp", "1", events.TypeUpdated, 1))

	waitDelivered(t, sink, 1)
	calls := sink.all()
	if len(calls) != 2 {
		t.Fatalf("%d attempts, want 2", len(calls))
	}
	if gap := calls[1].at.Sub(calls[0].at); gap < wait {
		t.Errorf("retried %v after a 429 with Retry-After %v", gap, wait)
	} else if gap > wait+3*time.Second {
		t.Errorf("retried only %v after a 429 with Retry-After %v", gap, wait)
	}
}

// ---------------------------------------------------------------------------
// 4

func TestPermanentFailureIsDeadLettered(t *testing.T) {
	t.Parallel()
	js := setup(t)
	bad := mkEvent(t, "vpp", "1", events.TypeRetired, 1)
	next := mkEvent(t, "vpp", "1", events.TypeRegistered, 2)
	sink := &recSink{name: "strict", script: func(n int, e events.Event) error {
		if e.ID() == bad.ID() {
			return &httpx.StatusError{Code: 400, Message: "bad payload"}
		}
		return nil
	}}
	start(t, js, notifier.Config{}, notifier.Route{Sink: sink})
	publish(t, js, bad, next)

	waitDelivered(t, sink, 1)
	waitSettled(t, js, "strict")
	if got := sink.delivered(); !slices.Equal(got, []string{next.ID()}) {
		t.Errorf("delivered %v, want only the next event %s", got, next.ID())
	}
	if n := sink.attempts(bad.ID()); n != 1 {
		t.Errorf("permanent failure attempted %d times, want 1", n)
	}
	dls := waitDeadLetters(t, js, 1)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	m := dls[0]
	if m.Subject != "rollcall.deadletter.strict" {
		t.Errorf("dead letter subject %q", m.Subject)
	}
	dl := decodeDeadLetter(t, m)
	if dl.Sink != "strict" || dl.Status != 400 || dl.Attempts != 1 || dl.Reason == "" || dl.At.IsZero() {
		t.Errorf("dead letter %+v: want sink strict, status 400, attempts 1, a reason and a time", dl)
	}
	if !strings.Contains(dl.Reason, "400") {
		t.Errorf("reason %q does not mention the status", dl.Reason)
	}
	// The original message exactly: its body bytes and headers.
	orig, err := bus.Msg(bad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dl.Data, orig.Data) || dl.Subject != orig.Subject || dl.EventID != bad.ID() {
		t.Errorf("dead letter keeps subject %q, %d bytes, id %q; want the original %q, %d bytes", dl.Subject, len(dl.Data), dl.EventID, orig.Subject, len(orig.Data))
	}
	for k, v := range orig.Header {
		if !slices.Equal(dl.Headers[k], v) {
			t.Errorf("dead letter header %s = %q, original %q", k, dl.Headers[k], v)
		}
	}
	ce, err := events.FromHeaders(events.Headers(dl.Headers), dl.Data)
	if err != nil {
		t.Fatalf("dead letter does not hold the event: %v", err)
	}
	if ce.ID() != bad.ID() || ce.Type() != bad.Type() || ce.Subject() != bad.Subject() {
		t.Errorf("dead-lettered event %s/%s/%s, want %s/%s/%s", ce.ID(), ce.Type(), ce.Subject(), bad.ID(), bad.Type(), bad.Subject())
	}
	if !bytes.Equal(ce.Data(), bad.Data()) {
		t.Errorf("dead-lettered data %s, want %s", ce.Data(), bad.Data())
	}
	if err := events.Validate(ce); err != nil {
		t.Errorf("dead-lettered event: %v", err)
	}
}

// ---------------------------------------------------------------------------
// 5

func TestMaxAttemptsExhausted(t *testing.T) {
	t.Parallel()
	js := setup(t)
	sink := &recSink{name: "down", script: func(int, events.Event) error { return &httpx.StatusError{Code: 503} }}
	start(t, js, notifier.Config{MaxAttempts: 3}, notifier.Route{Sink: sink})
	e := mkEvent(t, "veeam", "abc", events.TypeRoleChanged, 1)
	publish(t, js, e)

	dls := waitDeadLetters(t, js, 1)
	waitSettled(t, js, "down")
	if n := sink.attempts(e.ID()); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := decodeDeadLetter(t, dls[0])
	if dls[0].Subject != "rollcall.deadletter.down" || dl.Sink != "down" || dl.Attempts != 3 || dl.Status != 503 {
		t.Errorf("dead letter on %s: %+v; want sink down, attempts 3, status 503", dls[0].Subject, dl)
	}
	if ce, err := events.FromHeaders(events.Headers(dl.Headers), dl.Data); err != nil || ce.ID() != e.ID() {
		t.Errorf("dead-lettered event id %q (err %v), want %s", ce.ID(), err, e.ID())
	}
	// Settled: no fourth attempt follows. The next event proves the
	// consumer moved on.
	e2 := mkEvent(t, "veeam", "abc", events.TypeUpdated, 2)
	publish(t, js, e2)
	testutil.CheckFor(t, waitLong, "condition", func() error {
		if sink.attempts(e2.ID()) == 0 {
			return errors.New("next event not attempted")
		}
		return nil
	})
	if n := sink.attempts(e.ID()); n != 3 {
		t.Errorf("attempts = %d after dead-lettering, want 3", n)
	}
}

// ---------------------------------------------------------------------------
// 6

func TestSinkOutageThenRecovery(t *testing.T) {
	t.Parallel()
	js := setup(t)
	var mu sync.Mutex
	requests := 0
	type rec struct{ id, user string }
	var got []rec
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			t.Errorf("decode request: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		requests++
		// Two outages: the first five requests, and requests 8 to 11,
		// which fall on later events.
		if requests <= 5 || requests >= 8 && requests <= 11 {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		got = append(got, rec{e.ID(), e.Subject()})
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	sink, err := webhook.New(webhook.Config{Name: "outage", URL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start(t, js, notifier.Config{MaxAttempts: 20}, notifier.Route{Sink: sink})

	users := []string{"alice", "bob", "carol"}
	want := map[string][]string{}
	var evs []events.Event
	for i := range 4 {
		for j, u := range users {
			src := "vpp"
			if j == 1 {
				src = "veeam"
			}
			e := mkEvent(t, src, u, events.TypeUpdated, uint64(i+1))
			evs = append(evs, e)
			want[u] = append(want[u], e.ID())
		}
	}
	publish(t, js, evs...)

	testutil.CheckFor(t, waitLong, "condition", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < len(evs) {
			return fmt.Errorf("received %d of %d after %d requests", len(got), len(evs), requests)
		}
		return nil
	})
	waitSettled(t, js, "outage")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(evs) {
		t.Errorf("received %d events, want %d", len(got), len(evs))
	}
	if requests != len(evs)+9 {
		t.Errorf("%d requests, want %d (each event once plus 9 failures)", requests, len(evs)+9)
	}
	per := map[string][]string{}
	for _, r := range got {
		per[r.user] = append(per[r.user], r.id)
	}
	for _, u := range users {
		if !slices.Equal(per[u], want[u]) {
			t.Errorf("user %s: received %v, want %v", u, per[u], want[u])
		}
	}
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
}

// ---------------------------------------------------------------------------
// 7

func TestFilters(t *testing.T) {
	t.Parallel()
	js := setup(t)
	filtered := &recSink{name: "retirements"}
	everything := &recSink{name: "everything"}
	start(t, js, notifier.Config{},
		notifier.Route{Sink: filtered, Types: []string{events.TypeRetired}, Sources: []string{"veeam"}},
		notifier.Route{Sink: everything})

	evs := []events.Event{
		mkEvent(t, "vpp", "1", events.TypeRetired, 1),
		mkEvent(t, "veeam", "a", events.TypeRetired, 2),
		mkEvent(t, "veeam", "a", events.TypeUpdated, 3),
		mkEvent(t, "vpp", "2", events.TypeRegistered, 4),
		mkEvent(t, "veeam", "b", events.TypeRoleChanged, 5),
		mkEvent(t, "veeam", "b", events.TypeRetired, 6),
		mkEvent(t, "vpp", "2", events.TypeRetired, 7),
	}
	publish(t, js, evs...)
	want := []string{evs[1].ID(), evs[5].ID()}

	waitDelivered(t, everything, len(evs))
	waitDelivered(t, filtered, len(want))
	waitSettled(t, js, "retirements")
	waitSettled(t, js, "everything")
	if got := filtered.all(); len(got) != len(want) {
		t.Errorf("filtered sink saw %v, want only %v", got, want)
	}
	checkPerUser(t, "filtered sink", filtered.delivered(), []events.Event{evs[1], evs[5]})
	checkPerUser(t, "unfiltered sink", everything.delivered(), evs)
}

// ---------------------------------------------------------------------------
// 8

func TestSinksAreIndependent(t *testing.T) {
	t.Parallel()
	js := setup(t)
	// The broken sink hangs (as a dead host would until the timeout) and,
	// once released, fails every time.
	release := make(chan struct{})
	var releaseOnce sync.Once
	broken := &recSink{name: "broken", script: func(n int, e events.Event) error {
		<-release
		return &httpx.StatusError{Code: 503}
	}}
	healthy := &recSink{name: "healthy"}
	start(t, js, notifier.Config{MaxAttempts: 1000},
		notifier.Route{Sink: broken}, notifier.Route{Sink: healthy})
	// Registered after start, so it runs before the notifier is stopped.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })

	// Four users; evs[0:4] are their first events.
	var evs []events.Event
	for i := range 10 {
		evs = append(evs, mkEvent(t, "vpp", fmt.Sprint(i%4), events.TypeUpdated, uint64(i+1)))
	}
	publish(t, js, evs...)
	waitDelivered(t, healthy, len(evs))
	waitSettled(t, js, "healthy")
	checkPerUser(t, "healthy sink", healthy.delivered(), evs)
	// Meanwhile the broken sink is stuck in the first delivery of each
	// user, and has tried nothing else.
	testutil.CheckFor(t, waitLong, "condition", func() error {
		if got := broken.all(); len(got) < 4 {
			return fmt.Errorf("broken sink has %d deliveries under way, want 4", len(got))
		}
		return nil
	})
	if got, want := callIDs(broken.all()), ids(evs[:4]); !sameSet(got, want) {
		t.Errorf("broken sink calls %v, want only each user's first event %v, still in flight", got, want)
	}

	releaseOnce.Do(func() { close(release) })
	testutil.CheckFor(t, waitLong, "condition", func() error {
		for _, e := range evs[:4] {
			if n := broken.attempts(e.ID()); n < 3 {
				return fmt.Errorf("broken sink attempted %s %d times; want retries under way", e.ID(), n)
			}
		}
		return nil
	})
	if got := broken.delivered(); len(got) != 0 {
		t.Errorf("broken sink delivered %v", got)
	}
	for _, e := range evs[4:] {
		if n := broken.attempts(e.ID()); n != 0 {
			t.Errorf("broken sink attempted %s before its user's first event was settled", e.ID())
		}
	}
	if info := consumerInfo(t, js, "broken"); info.NumAckPending != len(evs) || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("broken consumer: NumAckPending %d, NumPending %d, NumRedelivered %d; want %d held, 0, 0", info.NumAckPending, info.NumPending, info.NumRedelivered, len(evs))
	}
	if info := consumerInfo(t, js, "healthy"); info.AckFloor.Stream != uint64(len(evs)) {
		t.Errorf("healthy consumer ack floor %d, want %d", info.AckFloor.Stream, len(evs))
	}
}

func callIDs(calls []call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.id
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// ---------------------------------------------------------------------------
// 9

func TestResumeAfterRestart(t *testing.T) {
	t.Parallel()
	js := setup(t)
	first := &recSink{name: "resume"}
	r := start(t, js, notifier.Config{}, notifier.Route{Sink: first})
	before := []events.Event{
		mkEvent(t, "vpp", "1", events.TypeRegistered, 1),
		mkEvent(t, "vpp", "1", events.TypeAssociated, 2),
		mkEvent(t, "veeam", "x", events.TypeUpdated, 3),
	}
	publish(t, js, before...)
	waitDelivered(t, first, len(before))
	waitSettled(t, js, "resume")
	r.stop()

	missed := []events.Event{
		mkEvent(t, "vpp", "1", events.TypeRetired, 4),
		mkEvent(t, "veeam", "x", events.TypeRoleChanged, 5),
	}
	publish(t, js, missed...)

	// Start "all" must not matter: the consumer exists and resumes.
	second := &recSink{name: "resume"}
	start(t, js, notifier.Config{}, notifier.Route{Sink: second, Start: "all"})
	waitDelivered(t, second, len(missed))
	waitSettled(t, js, "resume")
	if got := second.all(); len(got) != len(missed) {
		t.Errorf("restarted sink received %v, want only the missed %v", got, ids(missed))
	}
	checkPerUser(t, "restarted sink", second.delivered(), missed)
	checkPerUser(t, "first run", first.delivered(), before)
}

func TestStartPosition(t *testing.T) {
	t.Parallel()
	js := setup(t)
	old := []events.Event{
		mkEvent(t, "vpp", "1", events.TypeRegistered, 1),
		mkEvent(t, "vpp", "2", events.TypeRegistered, 2),
	}
	publish(t, js, old[0])
	publish(t, js, old[1])
	// A start time equal to the second event's stored time includes it but
	// not the first.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := st.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	// time.Parse(time.RFC3339) accepts fractional seconds, so the start
	// can be the second event's exact time.
	at := m2.Time.UTC()
	checkTime := m1.Time.Before(at)
	if !checkTime {
		t.Logf("both events stored at %v; not checking a start time", at)
	}

	fresh := &recSink{name: "fresh"}
	all := &recSink{name: "all"}
	byTime := &recSink{name: "bytime"}
	routes := []notifier.Route{{Sink: fresh}, {Sink: all, Start: "all"}}
	if checkTime {
		routes = append(routes, notifier.Route{Sink: byTime, Start: at.Format(time.RFC3339Nano)})
	}
	start(t, js, notifier.Config{}, routes...)
	// "New" is the stream's position when the consumer was made, fixed by
	// the notifier (a replicated consumer's DeliverNewPolicy is fixed later,
	// by its leader: review 16b).
	if ci := consumerInfo(t, js, "fresh"); ci.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || ci.Config.OptStartSeq != m2.Sequence+1 {
		t.Errorf("default start: deliver policy %v from %d, want by start sequence from %d", ci.Config.DeliverPolicy, ci.Config.OptStartSeq, m2.Sequence+1)
	}
	later := mkEvent(t, "veeam", "z", events.TypeUpdated, 3)
	publish(t, js, later)

	waitDelivered(t, all, 3)
	waitDelivered(t, fresh, 1)
	waitSettled(t, js, "fresh")
	waitSettled(t, js, "all")
	if got := fresh.delivered(); !slices.Equal(got, []string{later.ID()}) {
		t.Errorf("start new received %v, want only %s", got, later.ID())
	}
	checkPerUser(t, "start all", all.delivered(), append(slices.Clone(old), later))
	if checkTime {
		waitDelivered(t, byTime, 2)
		waitSettled(t, js, "bytime")
		checkPerUser(t, "start "+at.Format(time.RFC3339Nano), byTime.delivered(), []events.Event{old[1], later})
	}
}

func TestBadStart(t *testing.T) {
	t.Parallel()
	js := setup(t)
	n := notifier.New(js, notifier.Config{}, notifier.Route{Sink: &recSink{name: "x"}, Start: "yesterday"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "yesterday") {
		t.Errorf("Run with start %q: %v, want an error naming it", "yesterday", err)
	}
}

// ---------------------------------------------------------------------------
// 10

func TestUndecodableMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	js := setup(t)
	sink := &recSink{name: "picky"}
	start(t, js, notifier.Config{}, notifier.Route{Sink: sink})

	m := nats.NewMsg("rollcall.events.vpp.x.user.updated")
	m.Header.Set("ce-garbage", "%%%zz")
	m.Header.Set("Content-Type", "text/plain")
	m.Data = []byte("not an event")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	good := mkEvent(t, "vpp", "x", events.TypeUpdated, 1)
	publish(t, js, good)

	waitDelivered(t, sink, 1)
	waitSettled(t, js, "picky")
	if got := sink.all(); len(got) != 1 || got[0].id != good.ID() {
		t.Errorf("sink saw %v, want only %s", got, good.ID())
	}
	dls := waitDeadLetters(t, js, 1)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if dls[0].Subject != "rollcall.deadletter.picky" {
		t.Errorf("dead letter subject %q", dls[0].Subject)
	}
	dl := decodeDeadLetter(t, dls[0])
	if dl.Sink != "picky" || dl.Attempts != 0 || !strings.Contains(dl.Reason, "undecodable") {
		t.Errorf("dead letter %+v, want no attempt (there is nothing to send)", dl)
	}
	if string(dl.Data) != "not an event" || dl.Headers["ce-garbage"][0] != "%%%zz" {
		t.Errorf("dead letter keeps %q and headers %v, want the original body and headers", dl.Data, dl.Headers)
	}
}

// ---------------------------------------------------------------------------
// 11

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	js := setup(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		// Servers like to quote what they were asked for.
		echo := "no route for " + r.URL.String() + " signed " + r.Header.Get("webhook-signature")
		switch {
		case n <= 2:
			http.Error(w, echo, http.StatusServiceUnavailable)
		case n == 3:
			http.Error(w, echo, http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	sink, err := webhook.New(webhook.Config{Name: "private", URL: srv.URL + "/hooks/SECRETxyz?token=SECRETtok",
		Secrets: []string{secret}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	start(t, js, notifier.Config{Logger: log}, notifier.Route{Sink: sink})

	bad := mkEvent(t, "vpp", "1", events.TypeUpdated, 1)
	ok := mkEvent(t, "vpp", "1", events.TypeRetired, 2)
	publish(t, js, bad, ok)
	dls := waitDeadLetters(t, js, 1)
	waitSettled(t, js, "private")

	out := logs.String()
	for _, want := range []string{"will retry", "dead-lettered", "delivered"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q; the test would prove nothing:\n%s", want, out)
		}
	}
	key := strings.TrimPrefix(secret, "whsec_")
	for _, leak := range []string{"SECRETxyz", "SECRETtok", key} {
		if strings.Contains(out, leak) {
			t.Errorf("logs contain %q:\n%s", leak, out)
		}
		for _, m := range dls {
			if bytes.Contains(m.Data, []byte(leak)) {
				t.Errorf("dead letter contains %q: %s", leak, m.Data)
			}
		}
	}
	if dl := decodeDeadLetter(t, dls[0]); dl.Status != 404 || dl.Attempts != 3 {
		t.Errorf("dead letter %+v, want status 404 after 3 attempts", dl)
	}
}

// ---------------------------------------------------------------------------
// failures of the bus itself

// A consumer deleted under a running notifier (an operator resetting a
// sink) must not silently end that sink's deliveries.
func TestConsumerDeletedWhileRunning(t *testing.T) {
	t.Parallel()
	js := setup(t)
	sink := &recSink{name: "reset"}
	other := &recSink{name: "other"}
	r := start(t, js, notifier.Config{}, notifier.Route{Sink: sink}, notifier.Route{Sink: other})
	e1 := mkEvent(t, "vpp", "1", events.TypeRegistered, 1)
	publish(t, js, e1)
	waitDelivered(t, sink, 1)
	waitSettled(t, js, "reset")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, bus.EventsStream, "reset"); err != nil {
		t.Fatal(err)
	}
	// The notifier recreates the consumer (new events only, as on a first
	// start) and carries on.
	testutil.CheckFor(t, waitLong, "condition", func() error {
		r.poll()
		if r.exited {
			return fmt.Errorf("Run returned while its context was live: %v", r.err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_, err := js.Consumer(cctx, bus.EventsStream, "reset")
		return err
	})
	e2 := mkEvent(t, "vpp", "1", events.TypeAssociated, 2)
	publish(t, js, e2)
	t.Cleanup(func() {
		if t.Failed() {
			ci := consumerInfo(t, js, "reset")
			t.Logf("consumer state: created %v delivered %+v ackfloor %+v pending %d ackpending %d waiting %d cfg policy %v optseq %d", ci.Created, ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.Config.DeliverPolicy, ci.Config.OptStartSeq)
		}
	})
	waitDelivered(t, sink, 2)
	waitDelivered(t, other, 2)
	if got := sink.delivered(); !slices.Equal(got, []string{e1.ID(), e2.ID()}) {
		t.Errorf("reset sink received %v, want %v", got, []string{e1.ID(), e2.ID()})
	}
}

// When the NATS connection is gone for good, Run fails rather than
// returning nil as if it had been asked to stop.
func TestConnectionClosedFailsRun(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	a, b := &recSink{name: "a"}, &recSink{name: "b"}
	n := notifier.New(js, notifier.Config{Backoff: fast, Schedule: fastSchedule, Logger: testLogger(t)}, notifier.Route{Sink: a}, notifier.Route{Sink: b})
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(rctx) }()
	testutil.CheckFor(t, waitLong, "condition", func() error {
		for _, name := range []string{"a", "b"} {
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := js.Consumer(cctx, bus.EventsStream, name)
			ccancel()
			if err != nil {
				return err
			}
		}
		return nil
	})
	e := mkEvent(t, "vpp", "1", events.TypeRegistered, 1)
	publish(t, js, e)
	waitDelivered(t, a, 1)
	waitDelivered(t, b, 1)

	nc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run returned nil after the connection closed")
		}
	case <-time.After(5 * time.Second):
		t.Error("Run did not return within 5s of the connection closing")
	}
}

// A route whose filters change between runs keeps its position and gets
// the new filters.
func TestFiltersUpdatedOnRestart(t *testing.T) {
	t.Parallel()
	js := setup(t)
	first := &recSink{name: "changing"}
	r := start(t, js, notifier.Config{}, notifier.Route{Sink: first, Types: []string{events.TypeRetired}})
	e1 := mkEvent(t, "vpp", "1", events.TypeRetired, 1)
	// Only matching events before the change: whether JetStream delivers
	// an older event that the wider filter matches depends on how far the
	// consumer had scanned, which no test can pin down.
	publish(t, js, e1)
	waitDelivered(t, first, 1)
	waitSettled(t, js, "changing")
	r.stop()

	second := &recSink{name: "changing"}
	start(t, js, notifier.Config{}, notifier.Route{Sink: second, Types: []string{events.TypeRetired, events.TypeUpdated}, Sources: []string{"vpp"}})
	want := notifier.FilterSubjects([]string{events.TypeRetired, events.TypeUpdated}, []string{"vpp"})
	// The consumer exists already, so wait for the new run to update it.
	testutil.CheckFor(t, waitLong, "condition", func() error {
		if got := consumerInfo(t, js, "changing").Config.FilterSubjects; !slices.Equal(got, want) {
			return fmt.Errorf("filters %v, want %v", got, want)
		}
		return nil
	})
	e3 := mkEvent(t, "vpp", "1", events.TypeUpdated, 3)
	publish(t, js, e3, mkEvent(t, "veeam", "a", events.TypeUpdated, 4))
	waitDelivered(t, second, 1)
	waitSettled(t, js, "changing")
	if got := second.all(); len(got) != 1 || got[0].id != e3.ID() {
		t.Errorf("after the filter change the sink saw %v, want only %s", got, e3.ID())
	}
}

// A delivery in flight when the notifier is stopped completes, is
// acknowledged, and is not sent again by the next run.
func TestShutdownFinishesInFlightDelivery(t *testing.T) {
	t.Parallel()
	js := setup(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var sendCtxErr error
	sink := &recSink{name: "slow", script: func(n int, e events.Event) error {
		if n == 1 {
			close(entered)
			<-release
		}
		return nil
	}}
	// Capture the send context's state through a wrapper sink.
	wrapped := ctxSink{recSink: sink, seen: &sendCtxErr}
	r := start(t, js, notifier.Config{}, notifier.Route{Sink: wrapped})
	e := mkEvent(t, "vpp", "1", events.TypeRegistered, 1)
	publish(t, js, e)
	select {
	case <-entered:
	case <-time.After(waitLong):
		t.Fatal("delivery never started")
	}
	r.cancel()
	r.poll()
	if r.exited {
		t.Fatalf("Run returned (%v) with a delivery in flight", r.err)
	}
	close(release)
	r.stop()
	if sendCtxErr != nil {
		t.Errorf("the in-flight delivery's context was cancelled: %v", sendCtxErr)
	}
	info := consumerInfo(t, js, "slow")
	if info.NumAckPending != 0 || info.AckFloor.Stream != 1 {
		t.Errorf("after shutdown: NumAckPending %d, ack floor %d; want the delivered event acknowledged", info.NumAckPending, info.AckFloor.Stream)
	}

	again := &recSink{name: "slow"}
	start(t, js, notifier.Config{}, notifier.Route{Sink: again})
	e2 := mkEvent(t, "vpp", "1", events.TypeAssociated, 2)
	publish(t, js, e2)
	waitDelivered(t, again, 1)
	if got := again.all(); len(got) != 1 || got[0].id != e2.ID() {
		t.Errorf("next run saw %v, want only %s", got, e2.ID())
	}
}

type ctxSink struct {
	*recSink
	seen *error
}

func (s ctxSink) Send(ctx context.Context, e events.Event) error {
	err := s.recSink.Send(ctx, e)
	if *s.seen == nil {
		*s.seen = ctx.Err()
	}
	return err
}
