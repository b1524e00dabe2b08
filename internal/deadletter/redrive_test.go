package deadletter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// putDeadLetter stores a dead letter of e for sink in the notifier's
// format: the original message, exactly.
func putDeadLetter(t *testing.T, js jetstream.JetStream, sink string, e events.Event, seq uint64) {
	t.Helper()
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(notifier.DeadLetter{Sink: sink, Reason: "permanent failure: http status 410", Status: 410, Attempts: 1,
		At: time.Now().UTC(), StreamSeq: seq, EventID: e.ID(), Subject: m.Subject, Headers: m.Header, Data: m.Data})
	if err != nil {
		t.Fatal(err)
	}
	dl := nats.NewMsg(bus.DeadLetterPrefix + sink)
	dl.Data = body
	if _, err := js.PublishMsg(ctxT(t), dl); err != nil {
		t.Fatal(err)
	}
}

// A redrive sends what was stored: the webhook gets the original body
// bytes, and a dead letter cut to fit is refused with the reason.
func TestRedriveSendsTheOriginalBytes(t *testing.T) {
	js := setup(t)
	if err := bus.EnsureDeadLetter(ctxT(t), js, 1); err != nil {
		t.Fatal(err)
	}
	e := mkEvent(t, "o1", events.TypeRetired, 1)
	putDeadLetter(t, js, "webhook", e, 7)
	cut := nats.NewMsg(bus.DeadLetterPrefix + "webhook")
	cut.Data, _ = json.Marshal(notifier.DeadLetter{Sink: "webhook", Reason: "undecodable message", StreamSeq: 8, Data: []byte("xxxx"), Cut: true, Size: 900 << 10})
	if _, err := js.PublishMsg(ctxT(t), cut); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	wh, err := webhook.New(webhook.Config{Name: "webhook", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := deadletter.List(ctxT(t), js, "webhook")
	if err != nil || len(entries) != 2 || entries[0].StreamSeq != 7 || entries[0].EventID() != e.ID() || !entries[1].Cut {
		t.Fatalf("list: %+v, %v", entries, err)
	}
	var out bytes.Buffer
	stats, err := deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"webhook": wh}, "", "", &out)
	if stats.Sent != 1 || len(stats.Failed) != 1 || !strings.Contains(stats.Failed[0].Reason, "too large to store whole") {
		t.Fatalf("redrive: %s, %v\n%s", stats, err, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || !bytes.Equal(bodies[0], e.Data()) {
		t.Fatalf("webhook got %q, want the original body %q", bodies, e.Data())
	}
}

// TestRedriveToSlackPastTheDigestThreshold is point 5 of issue 13: fifty
// dead letters redriven to Slack one at a time went out as single posts
// up to the digest threshold; from the eleventh on, each Send waited a
// whole digest window alone and timed out. Redrive now hands a sink's
// dead letters out together, as many as it takes, so they are digested.
func TestRedriveToSlackPastTheDigestThreshold(t *testing.T) {
	js := setup(t)
	if err := bus.EnsureDeadLetter(ctxT(t), js, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		putDeadLetter(t, js, "slack", mkEvent(t, "s"+string(rune('a'+i%26))+string(rune('a'+i/26)), events.TypeRetired, uint64(i)), uint64(i+1))
	}
	var mu sync.Mutex
	posts := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts++
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	sl, err := slack.New(slack.Config{WebhookURL: srv.URL + "/services/T/B/x", DigestThreshold: 10, DigestWindow: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	stats, err := deadletter.Redrive(ctx, js, map[string]deadletter.Sender{"slack": sl}, "slack", "", io.Discard)
	if err != nil || stats.Sent != 50 {
		t.Fatalf("redrive to Slack: %s, %v", stats, err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("50 dead letters redriven to Slack in %s, %d posts", time.Since(begin).Round(time.Millisecond), posts)
	if posts >= 50 {
		t.Fatalf("%d posts for 50 events past the digest threshold: not digested", posts)
	}
}
