package notifier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// A webhook in binary mode sends most messages as they are (events.AsBinary)
// rather than decoding and encoding them again; what it receives must be
// the same either way: a message in the encoder's form is sent as it is
// (and retried as it is), one in another form is re-encoded, one whose data
// holds a secret an older release published is scrubbed, one that does not
// decode is dead-lettered and never sent, and one the endpoint refuses is
// dead-lettered under its event id.
func TestWebhookPassThroughSendsWhatDecodingWould(t *testing.T) {
	t.Parallel()
	js := setup(t)
	type got struct {
		id, subject, time, kind, body string
	}
	var mu sync.Mutex
	received := map[string][]got{}
	attempts := map[string]int{}
	var plain, refused events.Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id := r.Header.Get("Ce-Id")
		mu.Lock()
		defer mu.Unlock()
		attempts[id]++
		switch {
		case id == plain.ID() && attempts[id] == 1:
			w.WriteHeader(http.StatusServiceUnavailable) // retried, as it is
			return
		case id == refused.ID():
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		received[id] = append(received[id], got{id, r.Header.Get("Ce-Subject"), r.Header.Get("Ce-Time"), r.Header.Get("Ce-Sourcekind"), string(b)})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	sink, err := webhook.New(webhook.Config{Name: "pass", URL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start(t, js, notifier.Config{MaxAge: time.Hour}, notifier.Route{Sink: sink})

	plain = mkEvent(t, "vpp", "plain", events.TypeUpdated, 1)
	refused = mkEvent(t, "vpp", "refused", events.TypeUpdated, 2)
	publish(t, js, plain, refused)

	raw := func(e events.Event, change func(h nats.Header) []byte) {
		t.Helper()
		h, body, err := events.ToHeaders(e)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(events.Subject(events.SourceName(e), e.Subject(), e.Type()))
		m.Header = nats.Header(h)
		m.Data = body
		if change != nil {
			m.Data = change(m.Header)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// A time the encoder would write in UTC.
	offset := mkEvent(t, "vpp", "offset", events.TypeUpdated, 3)
	raw(offset, func(h nats.Header) []byte {
		h["ce-time"] = []string{offset.Time().In(time.FixedZone("x", 3600)).Format(time.RFC3339Nano)}
		return offset.Data()
	})
	// Data an older release published with a password in the raw record.
	old := mkEvent(t, "vpp", "old", events.TypeUpdated, 4)
	raw(old, func(nats.Header) []byte {
		var d map[string]any
		if err := json.Unmarshal(old.Data(), &d); err != nil {
			t.Fatal(err)
		}
		d["user"].(map[string]any)["raw"] = map[string]any{"id": "old", "password": "hunter2"}
		b, _ := json.Marshal(d)
		return b
	})
	// A time that does not parse: not an event.
	broken := mkEvent(t, "vpp", "broken", events.TypeUpdated, 5)
	raw(broken, func(h nats.Header) []byte {
		h["ce-time"] = []string{"yesterday"}
		return broken.Data()
	})

	testutil.CheckFor(t, waitLong, "deliveries", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(received) < 3 {
			return fmt.Errorf("received %d events of 3", len(received))
		}
		return nil
	})
	waitSettled(t, js, "pass")
	dls := waitDeadLetters(t, js, 2)

	mu.Lock()
	defer mu.Unlock()
	if len(received) != 3 || attempts[broken.ID()] != 0 {
		t.Errorf("received %v, want plain, offset and old once each and nothing of the broken one", received)
	}
	for _, e := range []events.Event{plain, offset, old} {
		g := received[e.ID()]
		if len(g) != 1 {
			t.Errorf("%s received %d times, want once", e.Subject(), len(g))
			continue
		}
		wantTime := e.Time().UTC().Format(time.RFC3339Nano)
		if g[0].subject != e.Subject() || g[0].time != wantTime || g[0].kind != "vpp" {
			t.Errorf("%s: received subject %q, time %q, sourcekind %q; want %q, %q, vpp", e.Subject(), g[0].subject, g[0].time, g[0].kind, e.Subject(), wantTime)
		}
		if strings.Contains(g[0].body, "hunter2") || strings.Contains(g[0].body, "password") {
			t.Errorf("%s: a secret was sent: %s", e.Subject(), g[0].body)
		}
	}
	if received[plain.ID()][0].body != string(plain.Data()) {
		t.Errorf("plain event's body %q, want %q", received[plain.ID()][0].body, plain.Data())
	}
	if attempts[plain.ID()] != 2 {
		t.Errorf("plain event attempted %d times, want 2 (one 503)", attempts[plain.ID()])
	}
	reasons := map[string]string{}
	for _, m := range dls {
		dl := decodeDeadLetter(t, m)
		reasons[dl.EventID] = dl.Reason
	}
	if r := reasons[refused.ID()]; !strings.Contains(r, "400") {
		t.Errorf("refused event dead-lettered as %q (dead letters %v), want a permanent failure under its id", r, reasons)
	}
	if r := reasons[""]; !strings.Contains(r, "undecodable") {
		t.Errorf("broken message dead-lettered as %q (dead letters %v), want undecodable", r, reasons)
	}
}
