package deadletter_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/pkg/events"
)

func TestSinks(t *testing.T) {
	js := setup(t)
	if got, err := deadletter.Sinks(ctxT(t), js); err != nil || len(got) != 0 {
		t.Fatalf("no stream: %v, %v", got, err)
	}
	if err := bus.EnsureDeadLetter(ctxT(t), js, 1); err != nil {
		t.Fatal(err)
	}
	putDeadLetter(t, js, "webhook-2", mkEvent(t, "s1", events.TypeRetired, 1), 3)
	putDeadLetter(t, js, "slack", mkEvent(t, "s2", events.TypeRetired, 1), 4)
	putDeadLetter(t, js, "webhook-2", mkEvent(t, "s3", events.TypeRetired, 1), 5)
	got, err := deadletter.Sinks(ctxT(t), js)
	if err != nil || !slices.Equal(got, []string{"slack", "webhook-2"}) {
		t.Fatalf("Sinks = %v, %v", got, err)
	}
}

// TestWriteJSON: `deadletter list --json` prints one object per dead
// letter with the sink, reason, status, attempts, stream sequence, event
// id and the event; an undecodable one carries what it holds.
func TestWriteJSON(t *testing.T) {
	js := setup(t)
	if err := bus.EnsureDeadLetter(ctxT(t), js, 1); err != nil {
		t.Fatal(err)
	}
	e := mkEvent(t, "j1", events.TypeRetired, 1)
	putDeadLetter(t, js, "webhook", e, 7)
	bad := nats.NewMsg(bus.DeadLetterPrefix + "webhook")
	bad.Data, _ = json.Marshal(notifier.DeadLetter{Sink: "webhook", Reason: "undecodable message", StreamSeq: 8, EventID: "x1", Subject: "rollcall.events.vpp.1.user.retired", Data: []byte("not\nan event")})
	if _, err := js.PublishMsg(ctxT(t), bad); err != nil {
		t.Fatal(err)
	}
	bin := nats.NewMsg(bus.DeadLetterPrefix + "webhook")
	bin.Data, _ = json.Marshal(notifier.DeadLetter{Sink: "webhook", Reason: "undecodable message", StreamSeq: 9, Data: []byte{0xff, 0xfe, 0}})
	if _, err := js.PublishMsg(ctxT(t), bin); err != nil {
		t.Fatal(err)
	}
	entries, err := deadletter.List(ctxT(t), js, "")
	if err != nil || len(entries) != 3 {
		t.Fatalf("List: %d, %v", len(entries), err)
	}
	var buf bytes.Buffer
	if err := deadletter.WriteJSON(&buf, entries); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	var got []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(got), text)
	}
	for _, tc := range []struct {
		name string
		line int
		want map[string]any
	}{
		{"event", 0, map[string]any{"sink": "webhook", "reason": "permanent failure: http status 410", "status": 410.0, "attempts": 1.0, "streamSeq": 7.0, "eventId": e.ID(), "eventType": events.TypeRetired}},
		{"undecodable text", 1, map[string]any{"undecodable": true, "eventId": "x1", "streamSeq": 8.0, "raw": "not\nan event", "subject": "rollcall.events.vpp.1.user.retired"}},
		{"undecodable bytes", 2, map[string]any{"undecodable": true, "rawBase64": "//4A", "streamSeq": 9.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.want {
				if got[tc.line][k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[tc.line][k], v)
				}
			}
		})
	}
	ev, ok := got[0]["event"].(map[string]any)
	if !ok || ev["id"] != e.ID() || ev["specversion"] != "1.0" {
		t.Errorf("event is not the structured CloudEvent: %#v", got[0]["event"])
	}
	if _, ok := got[1]["event"]; ok || strings.Count(text, "\n") != 3 {
		t.Errorf("undecodable with an event, or lines broken:\n%s", text)
	}
}
