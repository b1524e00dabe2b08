package deadletter_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/pkg/events"
)

// A valid event too large to store whole in a dead letter (an 800 kB user
// record, refused with 413) is stored cut, with its event id beside it.
// List must still show which event it is, and `deadletter redrive --id`
// must find it; decode keeps the recorded id only when the cut message
// fails to decode, and a binary-mode message cut in its body still
// decodes, so the entry has no id at all.
func TestRegress13CutDeadLetterKeepsItsEventID(t *testing.T) {
	js := setup(t)
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "huge", Status: "associated", Email: "huge@example.com",
		Raw: []byte(`{"blob":"` + strings.Repeat("x", 800<<10) + `"}`)}
	e, err := events.New(events.Spec{Type: events.TypeUpdated, User: u, Reason: events.ReasonFields, Changes: []events.Change{}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, e)
	deadLetterAll(t, js, map[string]int{"toolarge": 1}, refusing{name: "toolarge", status: 413})
	entries, err := deadletter.List(ctxT(t), js, "toolarge")
	if err != nil || len(entries) != 1 {
		t.Fatalf("list: %d entries, %v", len(entries), err)
	}
	if !entries[0].Cut {
		t.Fatalf("dead letter of an %d-byte event not cut", len(e.Data()))
	}
	if got := entries[0].EventID(); got != e.ID() {
		t.Errorf("list shows event id %q for the cut dead letter, want %q (recorded in it)", got, e.ID())
	}
	stats, err := deadletter.Redrive(ctxT(t), js, map[string]deadletter.Sender{"toolarge": &recorder{}}, "toolarge", e.ID(), io.Discard)
	if errors.Is(err, deadletter.ErrNoMatch) || stats.Matched != 1 {
		t.Fatalf("redrive --id %s: %s, %v; want the cut dead letter matched (and refused as too large)", e.ID(), stats, err)
	}
}
