package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestAsOfSaysWhatItSkipped: messages on a source's subjects that are not
// rollcall events are skipped by the as-of rebuild, and the page and the
// CSV say how many.
func TestAsOfSaysWhatItSkipped(t *testing.T) {
	s, js := console(t, Config{Access: Access{Loopback: true}})
	for i, data := range []string{`{"user": not json`, `[]`} {
		e, err := events.New(events.Spec{Type: events.TypeRegistered, Reason: events.ReasonNew, Observed: time.Now(),
			User: events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "bad-" + itoa(i), Status: "enabled"}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := bus.Msg(e)
		if err != nil {
			t.Fatal(err)
		}
		m.Data = []byte(data)
		m.Header.Del(jetstream.MsgIDHeader)
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	h := s.Handler()
	w := get(t, h, "/asof?source=veeam&at=now")
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, `id="asof-skipped"`) || !strings.Contains(body, "2 message(s)") || !strings.Contains(body, "u-1") {
		t.Errorf("as-of page: status %d, want 200 listing u-1 and saying 2 messages were skipped: %s", w.Code, body)
	}
	c := get(t, h, "/asof.csv?source=veeam&at=now")
	if got := c.Header().Get("X-Rollcall-Skipped-Messages"); c.Code != 200 || got != "2" || !strings.Contains(c.Body.String(), "u-1") {
		t.Errorf("as-of CSV: status %d, X-Rollcall-Skipped-Messages %q, want 200, 2 and u-1 listed", c.Code, got)
	}
}
