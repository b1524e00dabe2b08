package notifier_test

// Issue 13: deliveries that outlast real outages (a day-long schedule,
// probes that bring a recovered sink its backlog at once), one stuck user
// that never stalls a sink, dead letters that keep the original message
// exactly and never block, and a dead-lettered message never attempted
// again.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// The default schedule keeps an event for at least a day, in attempts
// whose waits grow from seconds to hours.
func TestDefaultScheduleLastsADay(t *testing.T) {
	var total time.Duration
	for i, d := range notifier.DefaultSchedule {
		if i > 0 && d < notifier.DefaultSchedule[i-1] {
			t.Errorf("wait %d (%s) shorter than the one before", i, d)
		}
		total += d
	}
	if total < 24*time.Hour {
		t.Fatalf("the default schedule lasts %s, want at least 24h", total)
	}
	if notifier.DefaultSchedule[0] > 10*time.Second || notifier.DefaultSchedule[len(notifier.DefaultSchedule)-1] < time.Hour {
		t.Fatalf("waits %v: want seconds first, hours last", notifier.DefaultSchedule)
	}
}

// The waits between attempts follow the schedule (within its 10% jitter),
// and the event is dead-lettered once the schedule is spent.
func TestScheduleIsFollowed(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	rc.answer = func(string, int) (int, string) { return http.StatusServiceUnavailable, "" }
	schedule := []time.Duration{40 * time.Millisecond, 160 * time.Millisecond, 480 * time.Millisecond}
	start(t, js, notifier.Config{Schedule: schedule}, notifier.Route{Sink: rc.sink(t, "scheduled")})
	e := mkEvent(t, "vpp", "s1", events.TypeUpdated, 1)
	publish(t, js, e)
	dls := waitDeadLetters(t, js, 1)
	if dl := decodeDeadLetter(t, dls[0]); dl.Attempts != len(schedule)+1 {
		t.Fatalf("dead letter after %d attempts, want %d (the whole schedule)", dl.Attempts, len(schedule)+1)
	}
	rc.mu.Lock()
	fails := slices.Clone(rc.failures)
	rc.mu.Unlock()
	if len(fails) != len(schedule)+1 {
		t.Fatalf("%d attempts, want %d", len(fails), len(schedule)+1)
	}
	for i, want := range schedule {
		got := fails[i+1].Sub(fails[i])
		if got < want*9/10 || got > want*11/10+150*time.Millisecond {
			t.Errorf("wait %d was %s, want %s (±10%%)", i+1, got, want)
		}
	}
}

// TestStuckUserNeverStallsASink: one user's deliveries fail (say the
// receiver chokes on that user) for as long as the schedule keeps them;
// with four sends at once, the user's four events used to fill the
// consumer's whole window and stall every other user. Now the other users'
// events are delivered as if nothing were wrong, and the stuck user's
// arrive, in order, once it recovers.
func TestStuckUserNeverStallsASink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		stuckEvents int
		window      int
	}{
		{"four stuck events, four sends at once", 4, 0},
		{"sixty stuck events in a window of 64", 60, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := setup(t)
			rc := newReceiver(t)
			var mu sync.Mutex
			stuck, sentAt := true, map[string]time.Time{}
			rc.answer = func(id string, _ int) (int, string) {
				mu.Lock()
				defer mu.Unlock()
				if strings.HasPrefix(userOfID(id), "vpp stuck") && stuck {
					return http.StatusServiceUnavailable, ""
				}
				return 0, ""
			}
			start(t, js, notifier.Config{Concurrency: 4, Window: tc.window, MaxAttempts: 100000,
				Schedule: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}},
				notifier.Route{Sink: rc.sink(t, "isolated")})
			var stuckEvs []events.Event
			for i := range tc.stuckEvents {
				stuckEvs = append(stuckEvs, mkEvent(t, "vpp", "stuck", events.TypeUpdated, uint64(1000+i)))
			}
			register(stuckEvs)
			publish(t, js, stuckEvs...)
			var users []string
			for i := range 50 {
				users = append(users, fmt.Sprintf("u%02d", i))
			}
			others := interleaved(t, users, 4)
			register(others)
			begin := time.Now()
			mu.Lock()
			for _, e := range others {
				sentAt[e.ID()] = time.Now()
			}
			mu.Unlock()
			publish(t, js, others...)
			rc.waitAccepted(t, len(others), waitLong)
			took := time.Since(begin)
			if n := len(rc.accepted()); n != len(others) {
				t.Fatalf("%d accepted while the stuck user still fails, want exactly the %d others", n, len(others))
			}
			lat := latencies(rc, others, sentAt, &mu)
			t.Logf("%d events of 50 other users delivered in %s while one user's %d events failed: latency p50 %s, p99 %s",
				len(others), took.Round(time.Millisecond), tc.stuckEvents, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond))
			// The stuck user recovers: its events arrive, in order.
			mu.Lock()
			stuck = false
			mu.Unlock()
			rc.waitAccepted(t, len(others)+len(stuckEvs), waitLong)
			checkPerUser(t, "receiver", rc.accepted(), append(slices.Clone(stuckEvs), others...))
			if dls := deadLetters(t, js); len(dls) != 0 {
				t.Fatalf("%d dead letters", len(dls))
			}
		})
	}
}

// idUser maps event ids to their user, for receivers that answer by user.
var (
	idUserMu sync.Mutex
	idUser   = map[string]string{}
)

func register(evs []events.Event) {
	idUserMu.Lock()
	defer idUserMu.Unlock()
	for _, e := range evs {
		idUser[e.ID()] = events.SourceName(e) + " " + e.Subject()
	}
}

func userOfID(id string) string {
	idUserMu.Lock()
	defer idUserMu.Unlock()
	return idUser[id]
}

// latencies is, sorted, the time from publishing to acceptance of evs.
func latencies(rc *receiver, evs []events.Event, sentAt map[string]time.Time, mu *sync.Mutex) []time.Duration {
	rc.mu.Lock()
	acceptedAt := map[string]time.Time{}
	for id, at := range rc.acceptedAt {
		acceptedAt[id] = at
	}
	rc.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	var out []time.Duration
	for _, e := range evs {
		out = append(out, acceptedAt[e.ID()].Sub(sentAt[e.ID()]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// A sink down for several users is probed out of the schedule, and the
// first delivery brings every waiting event at once: with an hour between
// attempts, the backlog still arrives right after the outage.
func TestRecoveredSinkGetsItsBacklogAtOnce(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	const outage = time.Second
	var first time.Time
	var mu sync.Mutex
	rc.answer = func(string, int) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) < outage {
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	start(t, js, notifier.Config{Schedule: []time.Duration{time.Hour}, ProbeEvery: 200 * time.Millisecond},
		notifier.Route{Sink: rc.sink(t, "probed")})
	evs := interleaved(t, []string{"a", "b", "c", "veeam:d"}, 3)
	publish(t, js, evs...)
	rc.waitAccepted(t, len(evs), 5*time.Second)
	mu.Lock()
	late := time.Since(first) - outage
	mu.Unlock()
	checkPerUser(t, "receiver", rc.accepted(), evs)
	if late > 2*time.Second {
		t.Fatalf("backlog delivered %s after the outage", late)
	}
	t.Logf("backlog of %d events delivered within %s of the end of a %s outage", len(evs), late.Round(time.Millisecond), outage)
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Fatalf("%d dead letters", len(dls))
	}
}

// TestRealOutageWithDefaults is the real run of issue 13: the receiver
// answers 503 for three minutes under the default settings; then every
// event arrives once, in per-user order, and nothing is dead-lettered.
func TestRealOutageWithDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-minute outage")
	}
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	const outage = 3 * time.Minute
	began := time.Now()
	rc.answer = func(string, int) (int, string) {
		if time.Since(began) < outage {
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	start(t, js, notifier.Config{Logger: testLogger(t), Backoff: fast, Schedule: notifier.DefaultSchedule},
		notifier.Route{Sink: rc.sink(t, "defaults")})
	var evs []events.Event
	for round := range 4 {
		batch := interleaved(t, []string{fmt.Sprintf("r%da", round), fmt.Sprintf("r%db", round), fmt.Sprintf("veeam:r%dc", round)}, 3)
		publish(t, js, batch...)
		evs = append(evs, batch...)
		time.Sleep(outage / 5) // events keep coming during the outage
	}
	// The default probe (every 30s) finds the sink back within a minute.
	rc.waitAccepted(t, len(evs), time.Until(began.Add(outage+time.Minute)))
	t.Logf("%d events delivered %s after a %s outage began, %s after it ended", len(evs), time.Since(began).Round(time.Second), outage, (time.Since(began) - outage).Round(time.Second))
	checkPerUser(t, "receiver", rc.accepted(), evs)
	for _, e := range evs {
		if n := countOf(rc.accepted(), e.ID()); n != 1 {
			t.Errorf("event %s accepted %d times", e.ID(), n)
		}
	}
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Fatalf("%d dead letters, want none", len(dls))
	}
}

func countOf(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// TestOversizedUndecodableMessageNeverBlocks: a 900 kB message that is not
// an event used to become a dead letter of up to three times its size
// (each invalid byte a \ufffd), which the server refused forever, so the
// user's later events never went out. Now the dead letter keeps the
// original bytes, cut to fit with a marker and the stream sequence, and the
// user's next event is delivered.
func TestOversizedUndecodableMessageNeverBlocks(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	start(t, js, notifier.Config{}, notifier.Route{Sink: rc.sink(t, "poisoned")})
	body := make([]byte, 900<<10)
	for i := range body {
		body[i] = byte(0x80 + i%64) // invalid UTF-8 throughout
	}
	m := nats.NewMsg(events.SubjectPrefix + "vpp.p1." + events.TypeUpdated)
	m.Data = body
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	next := mkEvent(t, "vpp", "p1", events.TypeUpdated, 2)
	publish(t, js, next)
	rc.waitAccepted(t, 1, waitLong)
	dls := waitDeadLetters(t, js, 1)
	dl := decodeDeadLetter(t, dls[0])
	if !dl.Cut || dl.Size != len(body) || dl.StreamSeq != 1 || len(dl.Data) == 0 || string(dl.Data) != string(body[:len(dl.Data)]) {
		t.Fatalf("dead letter cut %v, size %d, stream seq %d, %d bytes kept: want the original's first bytes, cut, size %d, seq 1",
			dl.Cut, dl.Size, dl.StreamSeq, len(dl.Data), len(body))
	}
	waitSettled(t, js, "poisoned")
}

// TestDeadLetteredMessageIsNotAttemptedAgain: a message dead-lettered, then
// delivered again because its Term was lost (a crash, a failover), is
// terminated without another attempt; and the dead-letter stream keeps one
// copy of a dead letter stored twice.
func TestDeadLetteredMessageIsNotAttemptedAgain(t *testing.T) {
	t.Parallel()
	js := setup(t)
	rc := newReceiver(t)
	r := start(t, js, notifier.Config{}, notifier.Route{Sink: rc.sink(t, "once")})
	stopWithin(t, r, 5*time.Second)
	e := mkEvent(t, "vpp", "d1", events.TypeUpdated, 1)
	publish(t, js, e)
	info := consumerInfo(t, js, "once")
	id := notifier.DeadLetterMsgID(e.ID(), "once", 1, info.Created.UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 2 { // stored twice: once kept
		dl := nats.NewMsg(bus.DeadLetterPrefix + "once")
		dl.Data = []byte(`{"sink":"once","reason":"permanent failure: http status 410","attempts":1}`)
		dl.Header.Set("Nats-Msg-Id", id)
		if _, err := js.PublishMsg(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(deadLetters(t, js)); n != 1 {
		t.Fatalf("%d dead letters after storing one twice, want 1", n)
	}
	s, err := js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if w := s.CachedInfo().Config.Duplicates; w < 24*time.Hour {
		t.Fatalf("dead-letter duplicate window %s, want at least a day", w)
	}
	start(t, js, notifier.Config{}, notifier.Route{Sink: rc.sink(t, "once")})
	waitSettled(t, js, "once")
	if n := rc.triesFor(e.ID()); n != 0 {
		t.Fatalf("the dead-lettered event was attempted %d times", n)
	}
	testutil.CheckFor(t, waitLong, "consumer settled", func() error {
		if ci := consumerInfo(t, js, "once"); ci.NumAckPending > 0 || ci.NumPending > 0 {
			return fmt.Errorf("pending %d, ack pending %d", ci.NumPending, ci.NumAckPending)
		}
		return nil
	})
}
