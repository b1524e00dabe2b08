package deadletter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/pkg/events"
)

// FuzzDecode: whatever a dead letter on ROLLCALL_DEADLETTER holds (written
// by any notifier release, or garbled), decoding it never panics, keeps
// the stream sequence, and yields either an undecodable entry, which holds
// no event and is never redriven, or an entry with the event to redrive
// (in the old format, one with an id). Text that is not JSON, and a dead
// letter whose message was cut, are never redrivable; neither is a message
// that is not a valid CloudEvent. Printing the entry is one safe row.
func FuzzDecode(f *testing.F) {
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "1", Status: "Associated", Email: "a@example.com", Raw: json.RawMessage(`{"userId":1}`)}
	e, err := events.New(events.Spec{Type: events.TypeAssociated, User: u, Reason: events.ReasonStatus, Observed: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if err != nil {
		f.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		f.Fatal(err)
	}
	structured, err := json.Marshal(e)
	if err != nil {
		f.Fatal(err)
	}
	quoted, _ := json.Marshal(string(body))
	at := time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)
	for _, dl := range []notifier.DeadLetter{
		{Sink: "hook", Reason: "status 500", Status: 500, Attempts: 5, At: at, StreamSeq: 3, EventID: e.ID(), Subject: "rollcall.events.vpp.1.user.associated", Headers: h, Data: body},
		{Sink: "hook", Reason: "too large", Status: 413, Attempts: 1, At: at, EventID: e.ID(), Headers: h, Data: body[:len(body)/2], Cut: true, Size: len(body)},
		{Sink: "hook", Reason: "undecodable message: x", At: at, Headers: map[string][]string{"ce-id": {"x"}}, Data: []byte("not an event")},
		{Sink: "hook", Reason: "old \x1b[2J format", Attempts: 2, At: at, Event: structured},
		{Sink: "other", Reason: "old, raw body", At: at, Event: quoted},
	} {
		b, err := json.Marshal(dl)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("hook", b)
	}
	f.Add("hook", []byte(`{"sink":"hook","event":{"specversion":"1.0","id":"","type":"user.registered"}}`))
	f.Add("hook", []byte(`{"sink":"hook","headers":{"ce-specversion":["1.0"]},"data":"e30="}`))
	f.Add("hook", []byte(`{"sink":`))
	f.Add("", []byte(`null`))
	f.Fuzz(func(t *testing.T, sink string, data []byte) {
		if strings.ContainsAny(sink, ".*> \t\r\n\f\v\x00") {
			return // not a subject token: the server never stores such a subject
		}
		m := &jetstream.RawStreamMsg{Subject: bus.DeadLetterPrefix + sink, Sequence: 42, Data: data, Time: at}
		en := decode(m)
		if en.Seq != 42 {
			t.Fatalf("sequence %d, want 42", en.Seq)
		}
		var dl notifier.DeadLetter
		stored := json.Unmarshal(data, &dl) == nil
		switch {
		case en.Undecodable:
			if en.Event.ID() != "" || en.EventID() != en.ID {
				t.Fatalf("undecodable entry holds event %q", en.Event.ID())
			}
		case !stored:
			t.Fatalf("a dead letter that is not JSON decoded to event %q", en.Event.ID())
		case dl.Cut:
			t.Fatalf("a cut dead letter is redrivable")
		case en.Event.Validate() != nil:
			// Found by fuzzing: headers {"ce-specversion":["1.0"]} and
			// body {} were redrivable without an id or type.
			t.Fatalf("redrivable entry that is not a valid event: %v", en.Event.Validate())
		}
		// Printed, the entry is a header, one row and a count: nothing
		// stored forges a row or reaches the terminal as a control
		// character.
		var b strings.Builder
		Print(&b, []Entry{en})
		out := b.String()
		if n := strings.Count(out, "\n"); n != 3 {
			t.Fatalf("printed %d lines, want 3:\n%s", n, out)
		}
		for _, r := range out + describe(en) {
			if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
				t.Fatalf("printed control character %U:\n%q", r, out)
			}
		}
	})
}
