package notifier_test

// Concurrent delivery across users with per-user order, retries in process,
// shutdown that releases in order, and the upgrade of consumers created with
// one message in flight. Real embedded NATS and real HTTP receivers.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

type entry struct {
	accept bool // false: a request arrived; true: it was accepted
	id     string
}

// receiver is a webhook endpoint that records every request, how many were
// in flight at once (overall and per user), and which events it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// delay is how long a request takes; a request whose client gives up
	// meanwhile is neither answered nor recorded as accepted.
	delay func(id string) time.Duration
	// answer is the status for a request that was not given up; 0 = 200.
	answer func(id string, try int) (status int, retryAfter string)

	mu          sync.Mutex
	log         []entry        // requests and acceptances, in order
	tries       []string       // every request's event id, in arrival order
	triesOf     map[string]int // per event id
	got         []string       // accepted event ids, in acceptance order
	inflight    int
	maxInflight int
	perUser     map[string]int
	overlaps    []string // users that had two requests in flight at once
	failures    []time.Time
	acceptedAt  map[string]time.Time // first acceptance of each event id
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, triesOf: map[string]int{}, perUser: map[string]int{}, acceptedAt: map[string]time.Time{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		rc.t.Errorf("decode request: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id, user := e.ID(), userOf(*e)
	rc.mu.Lock()
	rc.tries = append(rc.tries, id)
	rc.log = append(rc.log, entry{id: id})
	rc.triesOf[id]++
	try := rc.triesOf[id]
	rc.inflight++
	rc.maxInflight = max(rc.maxInflight, rc.inflight)
	rc.perUser[user]++
	if rc.perUser[user] > 1 {
		rc.overlaps = append(rc.overlaps, user)
	}
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.inflight--
		rc.perUser[user]--
		rc.mu.Unlock()
	}()
	if rc.delay != nil {
		if d := rc.delay(id); d > 0 {
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-r.Context().Done():
				return // the notifier gave up: not delivered
			}
		}
	}
	status, retryAfter := http.StatusOK, ""
	if rc.answer != nil {
		if s, ra := rc.answer(id, try); s != 0 {
			status, retryAfter = s, ra
		}
	}
	rc.mu.Lock()
	if status/100 == 2 {
		if rc.acceptedAt[id].IsZero() {
			rc.acceptedAt[id] = time.Now()
		}
		rc.got = append(rc.got, id)
		rc.log = append(rc.log, entry{accept: true, id: id})
	} else {
		rc.failures = append(rc.failures, time.Now())
	}
	rc.mu.Unlock()
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
}

func (rc *receiver) sink(t *testing.T, name string) notifier.Sink {
	t.Helper()
	s, err := webhook.New(webhook.Config{Name: name, URL: rc.srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (rc *receiver) accepted() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

func (rc *receiver) triesFor(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.triesOf[id]
}

func (rc *receiver) waitAccepted(t *testing.T, n int, within time.Duration) {
	t.Helper()
	testutil.CheckFor(t, within, "condition", func() error {
		if got := len(rc.accepted()); got < n {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return fmt.Errorf("receiver accepted %d of %d events after %d requests", got, n, len(rc.tries))
		}
		return nil
	})
}

// checkSerialPerUser asserts that no user ever had two requests in flight
// and that each user's requests went in publish order: an event was tried
// only once the user's previous event had been accepted, and never again
// after it was accepted. (A request is logged before its answer, and the
// notifier sends the next one only after reading it, so the log's order
// is the order of cause and effect.)
func (rc *receiver) checkSerialPerUser(t *testing.T, want []events.Event) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.overlaps) > 0 {
		t.Errorf("users with two requests in flight at once: %v", rc.overlaps)
	}
	index := map[string]int{}
	user := map[string]string{}
	n := map[string]int{}
	for _, e := range want {
		user[e.ID()] = userOf(e)
		index[e.ID()] = n[userOf(e)]
		n[userOf(e)]++
	}
	type state struct {
		cur  int  // index of the event the user is on
		done bool // whether it was accepted
	}
	st := map[string]*state{}
	for u := range n {
		st[u] = &state{cur: -1, done: true}
	}
	for _, en := range rc.log {
		u, ok := user[en.id]
		if !ok {
			t.Errorf("request for unexpected event %s", en.id)
			continue
		}
		i, s := index[en.id], st[u]
		switch {
		case en.accept && i != s.cur:
			t.Errorf("user %s: event #%d accepted while on #%d", u, i, s.cur)
		case en.accept:
			s.done = true
		case i == s.cur && !s.done:
			// a retry
		case i == s.cur+1 && s.done:
			s.cur, s.done = i, false
		default:
			t.Errorf("user %s: event #%d (%s) tried while on #%d (accepted %v)", u, i, en.id, s.cur, s.done)
		}
	}
}

// checkPrefixPerUser asserts that, for every user, got holds a prefix of
// the user's events in want.
func checkPrefixPerUser(t *testing.T, label string, got []string, want []events.Event) {
	t.Helper()
	gotPer := map[string][]string{}
	user := map[string]string{}
	for _, e := range want {
		user[e.ID()] = userOf(e)
	}
	for _, id := range got {
		gotPer[user[id]] = append(gotPer[user[id]], id)
	}
	wantPer := map[string][]string{}
	for _, e := range want {
		wantPer[userOf(e)] = append(wantPer[userOf(e)], e.ID())
	}
	for u, w := range wantPer {
		g := gotPer[u]
		if len(g) > len(w) || !slices.Equal(g, w[:len(g)]) {
			t.Errorf("%s: user %s received %v, not a prefix of %v", label, u, g, w)
		}
	}
}

// interleaved builds rounds × users events, round-robin over the users.
func interleaved(t *testing.T, users []string, rounds int) []events.Event {
	t.Helper()
	var evs []events.Event
	rev := uint64(0)
	for range rounds {
		for _, u := range users {
			rev++
			src, id := "vpp", u
			if len(u) > 6 && u[:6] == "veeam:" {
				src, id = "veeam", u[6:]
			}
			evs = append(evs, mkEvent(t, src, id, events.Types[int(rev)%len(events.Types)], rev))
		}
	}
	return evs
}

// stopWithin cancels the notifier and returns how long Run took to return,
// failing the test if that exceeds limit.
func stopWithin(t *testing.T, r *runner, limit time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		r.exited, r.err = true, err
	case <-time.After(limit):
		t.Fatalf("Run did not return within %v of cancel", limit)
	}
	took := time.Since(t0)
	if r.err != nil {
		t.Errorf("Run: %v", r.err)
	}
	return took
}

// acked is how many of the consumer's messages are acknowledged: every
// message of the stream minus those not yet delivered and those delivered
// but not acknowledged (in flight, held or released).
func acked(t *testing.T, js jetstream.JetStream, name string, total int) int {
	t.Helper()
	info := consumerInfo(t, js, name)
	return total - int(info.NumPending) - info.NumAckPending
}

// ---------------------------------------------------------------------------

// Many users, a flaky and jittery receiver: every event arrives exactly
// once, each user's in order, and deliveries ran side by side.
func TestConcurrentAcrossUsersOrderedPerUser(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	rc.delay = func(string) time.Duration {
		rmu.Lock()
		defer rmu.Unlock()
		return time.Duration(rng.IntN(5001)) * time.Microsecond
	}
	rc.answer = func(string, int) (int, string) {
		rmu.Lock()
		defer rmu.Unlock()
		if rng.IntN(100) < 20 {
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	start(t, js, notifier.Config{MaxAttempts: 100}, notifier.Route{Sink: rc.sink(t, "busy")})

	// The same user id at two sources is two users.
	users := []string{"alice", "bob", "carol", "veeam:alice", "veeam:dave"}
	evs := interleaved(t, users, 40)
	publish(t, js, evs[:100]...)
	publish(t, js, evs[100:]...)

	rc.waitAccepted(t, len(evs), 30*time.Second)
	waitSettled(t, js, "busy")
	checkPerUser(t, "receiver", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
	rc.mu.Lock()
	maxIn, fails, tries := rc.maxInflight, len(rc.failures), len(rc.tries)
	rc.mu.Unlock()
	t.Logf("%d requests, %d answered 503, at most %d in flight", tries, fails, maxIn)
	if maxIn < 2 {
		t.Errorf("at most %d request in flight; want deliveries across users to overlap", maxIn)
	}
	if maxIn > len(users) {
		t.Errorf("%d requests in flight for %d users", maxIn, len(users))
	}
	if fails == 0 {
		t.Error("no request failed; the test proves nothing about retries")
	}
	if tries != len(evs)+fails {
		t.Errorf("%d requests, want %d events + %d failures", tries, len(evs), fails)
	}
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
	if info := consumerInfo(t, js, "busy"); info.NumRedelivered != 0 || info.AckFloor.Stream != uint64(len(evs)) {
		t.Errorf("consumer: %d redelivered, ack floor %d; want 0 and %d (retries stay in process)", info.NumRedelivered, info.AckFloor.Stream, len(evs))
	}
}

// A user whose first event keeps failing holds back only its own later
// events.
func TestFailingUserDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	stuck := []events.Event{
		mkEvent(t, "vpp", "stuck", events.TypeRegistered, 1),
		mkEvent(t, "vpp", "stuck", events.TypeAssociated, 2),
		mkEvent(t, "vpp", "stuck", events.TypeRetired, 3),
	}
	var recovered atomic.Bool
	rc.answer = func(id string, _ int) (int, string) {
		if id == stuck[0].ID() && !recovered.Load() {
			return http.StatusBadGateway, ""
		}
		return 0, ""
	}
	start(t, js, notifier.Config{MaxAttempts: 10000}, notifier.Route{Sink: rc.sink(t, "hol")})

	others := interleaved(t, []string{"a", "b", "c", "veeam:d"}, 5)
	evs := append(slices.Clone(stuck[:1]), others[:10]...)
	evs = append(evs, stuck[1])
	evs = append(evs, others[10:]...)
	evs = append(evs, stuck[2])
	publish(t, js, evs...)

	rc.waitAccepted(t, len(others), waitLong)
	testutil.CheckFor(t, waitLong, "condition", func() error {
		if n := rc.triesFor(stuck[0].ID()); n < 3 {
			return fmt.Errorf("stuck event tried %d times, want retries under way", n)
		}
		return nil
	})
	checkPerUser(t, "others while one user is stuck", rc.accepted(), others)
	for _, e := range stuck[1:] {
		if n := rc.triesFor(e.ID()); n != 0 {
			t.Errorf("stuck user's later event %s tried %d times before its first was delivered", e.ID(), n)
		}
	}

	recovered.Store(true)
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "hol")
	checkPerUser(t, "receiver", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
	if got := rc.accepted(); !slices.Equal(got[len(got)-3:], ids(stuck)) {
		t.Errorf("last three accepted %v, want the stuck user's events %v", got[len(got)-3:], ids(stuck))
	}
}

// A long outage of the receiver, then recovery: everything arrives once, in
// per-user order, nothing is dead-lettered.
func TestLongOutageThenRecoveryKeepsUserOrder(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	const outage = 1500 * time.Millisecond
	var mu sync.Mutex
	var first time.Time
	rc.answer = func(string, int) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) < outage {
			if rand.IntN(2) == 0 {
				return http.StatusTooManyRequests, "0"
			}
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	start(t, js, notifier.Config{MaxAttempts: 1000, Schedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond}},
		notifier.Route{Sink: rc.sink(t, "outage2")})

	evs := interleaved(t, []string{"u1", "u2", "u3", "veeam:u4"}, 10)
	publish(t, js, evs...)

	rc.waitAccepted(t, len(evs), 20*time.Second)
	waitSettled(t, js, "outage2")
	checkPerUser(t, "receiver", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
	rc.mu.Lock()
	fails := rc.failures
	rc.mu.Unlock()
	if len(fails) < 8 {
		t.Errorf("only %d failed requests; want every user retried through the outage", len(fails))
	}
	mu.Lock()
	if len(fails) > 0 {
		if last := fails[len(fails)-1].Sub(first); last < outage-200*time.Millisecond {
			t.Errorf("last failure %v into the outage; want retries throughout its %v", last, outage)
		}
	}
	mu.Unlock()
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
}

// Stopped while deliveries are slow: Run returns promptly, only what the
// receiver took is acknowledged, and the next notifier delivers the rest
// once each, in per-user order.
func TestShutdownReleasesHeldEventsInOrder(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	var slow atomic.Bool
	slow.Store(true)
	rc.delay = func(string) time.Duration {
		if slow.Load() {
			return 300 * time.Millisecond
		}
		return 0
	}
	const grace = 2 * time.Second
	r := start(t, js, notifier.Config{ShutdownGrace: grace}, notifier.Route{Sink: rc.sink(t, "slowhook")})

	evs := interleaved(t, []string{"p", "q", "r", "s", "veeam:t"}, 6)
	publish(t, js, evs...)
	rc.waitAccepted(t, 5, waitLong)
	took := stopWithin(t, r, grace+time.Second)
	first := rc.accepted()
	t.Logf("Run returned %v after cancel; %d of %d delivered before the stop", took, len(first), len(evs))
	if len(first) >= len(evs) {
		t.Fatalf("everything delivered before the stop; the test proves nothing")
	}
	if n := acked(t, js, "slowhook", len(evs)); n != len(first) {
		t.Errorf("%d events acknowledged, receiver took %d", n, len(first))
	}
	checkPerUser(t, "first run", first, filterIDs(evs, first))
	checkPrefixPerUser(t, "first run", first, evs)

	slow.Store(false)
	start(t, js, notifier.Config{}, notifier.Route{Sink: rc.sink(t, "slowhook")})
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "slowhook")
	checkPerUser(t, "both runs", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
}

// Deliveries slower than the grace are cut off and released, not
// acknowledged; the next run delivers them.
func TestShutdownGraceCutsSlowDeliveries(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	var slow atomic.Bool
	slow.Store(true)
	rc.delay = func(string) time.Duration {
		if slow.Load() {
			return time.Minute
		}
		return 0
	}
	const grace = 300 * time.Millisecond
	r := start(t, js, notifier.Config{ShutdownGrace: grace}, notifier.Route{Sink: rc.sink(t, "stuckhook")})
	evs := interleaved(t, []string{"x", "y", "veeam:z"}, 3)
	publish(t, js, evs...)
	testutil.CheckFor(t, waitLong, "condition", func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.inflight < 3 {
			return fmt.Errorf("%d requests in flight, want 3", rc.inflight)
		}
		return nil
	})
	took := stopWithin(t, r, grace+time.Second)
	if took < grace {
		t.Errorf("Run returned after %v, before the %v grace for deliveries in flight", took, grace)
	}
	if got := rc.accepted(); len(got) != 0 {
		t.Errorf("receiver accepted %v", got)
	}
	if n := acked(t, js, "stuckhook", len(evs)); n != 0 {
		t.Errorf("%d events acknowledged, none was delivered", n)
	}

	slow.Store(false)
	start(t, js, notifier.Config{}, notifier.Route{Sink: rc.sink(t, "stuckhook")})
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "stuckhook")
	checkPerUser(t, "receiver", rc.accepted(), evs)
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Errorf("%d dead letters, want none (cut deliveries are not failures)", len(dls))
	}
}

// A consumer made by an older notifier (one message in flight) gets the new
// limit on start and keeps its position.
func TestUpgradesSingleFlightConsumer(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	old, err := js.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{
		Durable:        "legacy",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        38 * time.Second,
		FilterSubjects: notifier.FilterSubjects(nil, nil),
		MaxAckPending:  1,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	created := old.CachedInfo().Created
	// Published before the notifier starts: only the existing consumer
	// (deliver all) sees them; a recreated one would start with new events.
	evs := interleaved(t, []string{"m1", "m2", "m3", "veeam:m4"}, 5)
	publish(t, js, evs...)

	rc := newReceiver(t)
	rc.delay = func(string) time.Duration { return 20 * time.Millisecond }
	start(t, js, notifier.Config{Concurrency: 8, Window: 8}, notifier.Route{Sink: rc.sink(t, "legacy")})
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "legacy")
	info := consumerInfo(t, js, "legacy")
	if info.Config.MaxAckPending != 8 {
		t.Errorf("MaxAckPending %d, want 8", info.Config.MaxAckPending)
	}
	if !info.Created.Equal(created) || info.Config.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("consumer recreated (created %v, was %v; policy %v)", info.Created, created, info.Config.DeliverPolicy)
	}
	checkPerUser(t, "receiver", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.maxInflight < 2 {
		t.Errorf("at most %d request in flight after the upgrade", rc.maxInflight)
	}
}

// Messages held longer than the ack wait (behind a failing first event)
// are kept alive: the server redelivers nothing.
func TestHeldEventsOutliveAckWait(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	a := []events.Event{
		mkEvent(t, "vpp", "a", events.TypeRegistered, 1),
		mkEvent(t, "vpp", "a", events.TypeAssociated, 2),
		mkEvent(t, "vpp", "a", events.TypeRetired, 3),
	}
	b := mkEvent(t, "vpp", "b", events.TypeRegistered, 4)
	const ackWait = 500 * time.Millisecond
	var recovered atomic.Bool
	rc.answer = func(id string, _ int) (int, string) {
		if id == a[0].ID() && !recovered.Load() {
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	start(t, js, notifier.Config{MaxAttempts: 10000, AckWait: ackWait}, notifier.Route{Sink: rc.sink(t, "patient")})
	if got := consumerInfo(t, js, "patient").Config.AckWait; got != ackWait {
		t.Fatalf("ack wait %v, want %v", got, ackWait)
	}
	publish(t, js, a[0], a[1], b, a[2])
	// a[1] and a[2] wait behind a[0] for three ack waits (the duration
	// under test, not a synchronisation).
	held := time.Now().Add(3 * ackWait)
	testutil.CheckFor(t, waitLong, "condition", func() error {
		if len(rc.accepted()) < 1 || rc.triesFor(a[0].ID()) < 3 || time.Now().Before(held) {
			return fmt.Errorf("holding: b accepted %v, a[0] tried %d times", len(rc.accepted()) == 1, rc.triesFor(a[0].ID()))
		}
		return nil
	})
	if n := rc.triesFor(a[1].ID()) + rc.triesFor(a[2].ID()); n != 0 {
		t.Errorf("a's later events tried %d times before its first was delivered", n)
	}
	recovered.Store(true)
	all := []events.Event{a[0], a[1], b, a[2]}
	rc.waitAccepted(t, len(all), waitLong)
	waitSettled(t, js, "patient")
	checkPerUser(t, "receiver", rc.accepted(), all)
	rc.checkSerialPerUser(t, all)
	if info := consumerInfo(t, js, "patient"); info.NumRedelivered != 0 || info.Delivered.Consumer != uint64(len(all)) {
		t.Errorf("consumer delivered %d times for %d events, %d redelivered; want no redelivery", info.Delivered.Consumer, len(all), info.NumRedelivered)
	}
}

// A release at shutdown is not an attempt (issue 13): an event in a retry's
// backoff when the notifier stops is released at once, comes back to the
// next run with its earlier delivery counted by the server, and gets
// MaxAttempts attempts there all the same: it is never dead-lettered early.
func TestReleaseAtShutdownIsNotAnAttempt(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	rc.answer = func(string, int) (int, string) { return http.StatusServiceUnavailable, "" }
	r := start(t, js, notifier.Config{MaxAttempts: 3, Schedule: []time.Duration{time.Minute}},
		notifier.Route{Sink: rc.sink(t, "counting")})
	e := mkEvent(t, "veeam", "k", events.TypeRoleChanged, 1)
	publish(t, js, e)
	testutil.CheckFor(t, waitLong, "condition", func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if len(rc.failures) < 1 {
			return fmt.Errorf("no attempt yet")
		}
		return nil
	})
	// The first run is now in a minute-long wait.
	stopWithin(t, r, time.Second)
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Fatalf("dead-lettered by the first run: %d", len(dls))
	}

	start(t, js, notifier.Config{MaxAttempts: 3}, notifier.Route{Sink: rc.sink(t, "counting")})
	dls := waitDeadLetters(t, js, 1)
	waitSettled(t, js, "counting")
	if n := rc.triesFor(e.ID()); n != 4 {
		t.Errorf("%d requests in all, want 4 (one before the release, then MaxAttempts)", n)
	}
	if dl := decodeDeadLetter(t, dls[0]); dl.Attempts != 3 || dl.Status != 503 {
		t.Errorf("dead letter %+v, want 3 attempts, status 503", dl)
	}
}

// filterIDs returns the events of evs whose ids are in keep, in evs' order.
func filterIDs(evs []events.Event, keep []string) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if slices.Contains(keep, e.ID()) {
			out = append(out, e)
		}
	}
	return out
}

// A run that crashed left messages unacknowledged; the server redelivers
// them only after the ack wait, while it would hand out the users' later
// events at once. The next run holds those back: each user's order holds.
func TestCrashedRunsEventsComeFirst(t *testing.T) {
	t.Parallel()
	js := setup(t)
	const ackWait = time.Second
	rc := newReceiver(t)
	cfg := notifier.Config{AckWait: ackWait}
	r := start(t, js, cfg, notifier.Route{Sink: rc.sink(t, "crashy")})
	stopWithin(t, r, 2*time.Second)

	evs := interleaved(t, []string{"x", "y", "veeam:z"}, 4)
	publish(t, js, evs...)
	// The crashed run: it took the first events of every user and died
	// before settling them.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, bus.EventsStream, "crashy")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(3, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var taken []string
	for m := range batch.Messages() {
		e, err := events.FromHeaders(events.Headers(m.Headers()), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		taken = append(taken, e.ID())
	}
	if !slices.Equal(taken, ids(evs[:3])) {
		t.Fatalf("crashed run took %v, want %v", taken, ids(evs[:3]))
	}
	crashed := time.Now()

	start(t, js, cfg, notifier.Route{Sink: rc.sink(t, "crashy")})
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "crashy")
	checkPerUser(t, "receiver", rc.accepted(), evs)
	rc.checkSerialPerUser(t, evs)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.tries) != len(evs) {
		t.Errorf("%d requests for %d events", len(rc.tries), len(evs))
	}
	t.Logf("all delivered %v after the crash (ack wait %v)", time.Since(crashed), ackWait)
}

// noNotifierGoroutines waits until no goroutine runs code of the notifier
// package (the pump, its lanes, gate watcher and keep-alive, Run itself).
func noNotifierGoroutines(t *testing.T) {
	t.Helper()
	testutil.CheckFor(t, 2*time.Second, "condition", func() error {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range bytes.Split(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte("rollcall/internal/notifier.")) {
				return fmt.Errorf("goroutine left behind:\n%s", g)
			}
		}
		return nil
	})
}

// Not parallel: it looks at every goroutine of the process. Retries, a
// shutdown with deliveries in flight and messages held, and a gated second
// run all end with nothing of the notifier left running.
func TestRunLeavesNoGoroutines(t *testing.T) {
	js := setup(t)
	rc := newReceiver(t)
	var slow atomic.Bool
	slow.Store(true)
	rc.delay = func(string) time.Duration {
		if slow.Load() {
			return 200 * time.Millisecond
		}
		return 0
	}
	rc.answer = func(_ string, try int) (int, string) {
		if try == 1 {
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	cfg := notifier.Config{AckWait: time.Second, ShutdownGrace: 100 * time.Millisecond}
	r := start(t, js, cfg, notifier.Route{Sink: rc.sink(t, "tidy")}, notifier.Route{Sink: &recSink{name: "tidy2"}})
	evs := interleaved(t, []string{"g1", "g2", "veeam:g3"}, 5)
	publish(t, js, evs...)
	rc.waitAccepted(t, 2, waitLong)
	stopWithin(t, r, 2*time.Second)
	noNotifierGoroutines(t)

	slow.Store(false)
	r = start(t, js, cfg, notifier.Route{Sink: rc.sink(t, "tidy")})
	rc.waitAccepted(t, len(evs), waitLong)
	waitSettled(t, js, "tidy")
	stopWithin(t, r, 2*time.Second)
	noNotifierGoroutines(t)
	checkPerUser(t, "receiver", dedupe(rc.accepted()), evs)
}

// dedupe keeps the first occurrence of every id.
func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range in {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Concurrency 1 is the old behaviour: one message in flight per sink, so
// the sink sees the whole stream's order, across users too.
func TestConcurrencyOneKeepsStreamOrder(t *testing.T) {
	t.Parallel()
	js := setup(t)
	sink := &recSink{name: "strictorder", script: func(n int, e events.Event) error {
		if n%3 == 0 {
			return &httpx.StatusError{Code: 503}
		}
		return nil
	}}
	start(t, js, notifier.Config{Concurrency: 1, Window: 1}, notifier.Route{Sink: sink})
	if got := consumerInfo(t, js, "strictorder").Config.MaxAckPending; got != 1 {
		t.Errorf("MaxAckPending %d, want 1", got)
	}
	evs := interleaved(t, []string{"o1", "o2", "veeam:o3"}, 4)
	publish(t, js, evs...)
	waitDelivered(t, sink, len(evs))
	waitSettled(t, js, "strictorder")
	if got := sink.delivered(); !slices.Equal(got, ids(evs)) {
		t.Errorf("delivered\n%v\nwant stream order\n%v", got, ids(evs))
	}
}
