package replay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// received is one request an httptest receiver got.
type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

type receiver struct {
	mu   sync.Mutex
	reqs []received
}

func (r *receiver) start(t *testing.T, status int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, received{header: req.Header.Clone(), body: b, at: time.Now()})
		r.mu.Unlock()
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// Replayed webhooks keep their webhook-id, the event id, so receivers
// de-duplicate them, and get a fresh, verifiable timestamp: the time of
// the delivery, not the event's.
func TestReplayToWebhook(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, []events.User{vppUser("vpp", 1, "registered", "a@example.com")})
	// Changes observed long ago.
	observed := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)
	w.step("vpp", []events.User{vppUser("vpp", 1, "associated", "a@example.com"), vppUser("vpp", 2, "registered", "b@example.com")}, observed)
	w.step("vpp", []events.User{vppUser("vpp", 1, "retired", "a@example.com"), vppUser("vpp", 2, "registered", "b@example.com")}, observed.Add(time.Hour))
	all := streamEvents(t, w.js)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("replay-test-secret-0123456789abcdef"))
	var rcv receiver
	sink, err := webhook.New(webhook.Config{URL: rcv.start(t, http.StatusNoContent), Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		before := time.Now()
		st, err := replay.Replay(context.Background(), w.js, replay.Options{}, sink)
		if err != nil {
			t.Fatal(err)
		}
		reqs := rcv.got()[(round-1)*len(all):]
		if st.Sent != len(all) || len(reqs) != len(all) {
			t.Fatalf("round %d: sent %d, received %d, want %d", round, st.Sent, len(reqs), len(all))
		}
		for i, r := range reqs {
			e := all[i].Event
			if got := r.header.Get("webhook-id"); got != e.ID() || r.header.Get("ce-id") != e.ID() {
				t.Errorf("round %d, event %d: webhook-id %q, ce-id %q; want the event id %q", round, i, got, r.header.Get("ce-id"), e.ID())
			}
			ts, err := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if ts < before.Unix() || ts > time.Now().Unix() || ts == e.Time().Unix() {
				t.Errorf("webhook-timestamp %d is not the time of delivery (%d…%d); the event's time is %d", ts, before.Unix(), time.Now().Unix(), e.Time().Unix())
			}
			if err := webhook.Verify([]string{secret}, r.header, r.body, time.Now(), 0); err != nil {
				t.Errorf("a receiver rejects the replayed request: %v", err)
			}
			if ce := r.header.Get("ce-time"); !strings.HasPrefix(ce, "2025-06-01T") {
				t.Errorf("ce-time %q: the event keeps its own time", ce)
			}
		}
	}
}

// A receiver that refuses an event stops the replay with an error that
// says which event and the receiver's status.
func TestReplayToWebhookRefused(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	w.step("vpp", []events.User{vppUser("vpp", 1, "registered", "a@example.com"), vppUser("vpp", 2, "registered", "b@example.com")}, time.Now())
	var rcv receiver
	sink, err := webhook.New(webhook.Config{URL: rcv.start(t, http.StatusServiceUnavailable)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := replay.Replay(context.Background(), w.js, replay.Options{}, sink)
	if err == nil || !strings.Contains(err.Error(), "503") || st.Sent != 0 || len(rcv.got()) != 1 {
		t.Fatalf("err %v, stats %+v, %d requests", err, st, len(rcv.got()))
	}
}

// The default output: CloudEvents JSON lines, in stream order.
func TestReplayToConsole(t *testing.T) {
	w := newWorld(t)
	w.seed("veeam", events.KindVeeam, []events.User{veeamUser("veeam", "u-1", "ann", "CompanyOwner", "Enabled")})
	w.step("veeam", []events.User{veeamUser("veeam", "u-1", "ann", "CompanyAdministrator", "Disabled"), veeamUser("veeam", "u-2", "bo", "CompanyOwner", "Enabled")}, time.Now())
	all := streamEvents(t, w.js)
	var buf bytes.Buffer
	if _, err := replay.Replay(context.Background(), w.js, replay.Options{Source: "veeam"}, console.New(console.Config{Out: &buf})); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(all) {
		t.Fatalf("%d lines for %d events:\n%s", len(lines), len(all), buf.String())
	}
	for i, l := range lines {
		var e events.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e.ID() != all[i].Event.ID() || events.Validate(e) != nil {
			t.Errorf("line %d: %s, want %s (%v)", i, e.ID(), all[i].Event.ID(), events.Validate(e))
		}
	}
}

// With InFlight, sends run without waiting for each other, up to the
// limit, and every event is sent once.
func TestReplayInFlight(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	var us []events.User
	for i := 1; i <= 60; i++ {
		us = append(us, vppUser("vpp", i, "registered", fmt.Sprintf("u%d@example.com", i)))
	}
	w.step("vpp", us, time.Now())
	all := streamEvents(t, w.js)
	var (
		mu      sync.Mutex
		started []string
		cur     atomic.Int32
		peak    atomic.Int32
	)
	out := collect{onSend: func(_ int, e events.Event) error {
		mu.Lock()
		started = append(started, e.ID())
		mu.Unlock()
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	}}
	st, err := replay.Replay(context.Background(), w.js, replay.Options{InFlight: 8}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != len(all) {
		t.Fatalf("sent %d of %d", st.Sent, len(all))
	}
	mu.Lock()
	defer mu.Unlock()
	if p := peak.Load(); p < 2 || p > 8 {
		t.Fatalf("peak sends in flight %d, want 2…8", p)
	}
	got := slices.Clone(started)
	slices.Sort(got)
	want := idsOf(all, func(events.Event) bool { return true })
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("not every event was sent once")
	}
}

// Slack digests the events in flight: a replay of a burst to Slack gives
// a few messages and a digest within about one window, not one window per
// event.
func TestReplayToSlack(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	var us []events.User
	for i := 1; i <= 40; i++ {
		us = append(us, vppUser("vpp", i, "registered", fmt.Sprintf("u%d@example.com", i)))
	}
	w.step("vpp", us, time.Now())
	var rcv receiver
	const window = 300 * time.Millisecond
	sink, err := slack.New(slack.Config{WebhookURL: rcv.start(t, http.StatusOK), DigestThreshold: 3, DigestWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	st, err := replay.Replay(context.Background(), w.js, replay.Options{InFlight: sink.Concurrency()}, sink)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); st.Sent != 40 || d > 6*window {
		t.Fatalf("sent %d in %v", st.Sent, d)
	}
	if n := len(rcv.got()); n < 2 || n > 6 {
		t.Fatalf("%d Slack messages for 40 events: want a few single ones and a digest", n)
	}
}
