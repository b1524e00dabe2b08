package events_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/rollcall/rollcall/pkg/events"
)

// FuzzDecodeData: whatever data an event on the bus carries, DecodeData
// never panics; an error names the event; a payload it accepts encodes
// again (the notifier re-encodes it for every sink) and decodes to the same
// payload, so that a redrive or a replay sends what the first delivery
// sent.
func FuzzDecodeData(f *testing.F) {
	prev := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-1", UserName: "Alpha", Status: "Enabled", Role: "CompanyAdministrator"}
	u := prev
	u.Role, u.Raw = "CompanyOwner", json.RawMessage(`{"instanceUid":"u-1","note":"<b>&</b>","n":1.50}`)
	e, err := events.New(events.Spec{Type: events.TypeRoleChanged, User: u, Previous: &prev, Changes: events.Diff(prev, u), Reason: events.ReasonRole, Observed: t0})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(e.Data())
	for _, s := range []string{
		`{"user":{"source":"vpp","sourceKind":"vpp","id":"1","status":"Registered","raw":{"userId":1}},"previous":null,"changes":[]}`,
		`{"user":{"id":"\ud800","raw":"x\u2028"},"changes":[{"field":"email","from":"a","to":"b"}],"reason":"fields"}`,
		`{"USER":{"ID":1}}`, `{"user":{"raw":nul}}`, `{"user":{"id":"a"}} {}`, "{\"user\":{\"email\":\"\xff\"}}",
		`null`, `[]`, `"x"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := event.New()
		ev.SetID("fuzz-event-id")
		if err := ev.SetData(event.ApplicationJSON, data); err != nil {
			t.Skip()
		}
		d, err := events.DecodeData(ev)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "events: decode data of fuzz-event-id: ") {
				t.Fatalf("error %q does not name the event", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted data that is not JSON: %q", data)
		}
		if len(d.User.Raw) > 0 && !json.Valid(d.User.Raw) {
			t.Fatalf("user.raw %q is not JSON", d.User.Raw)
		}
		once, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("accepted payload does not encode again: %v", err)
		}
		ev2 := event.New()
		ev2.SetID("fuzz-event-id")
		if err := ev2.SetData(event.ApplicationJSON, once); err != nil {
			t.Fatal(err)
		}
		d2, err := events.DecodeData(ev2)
		if err != nil {
			t.Fatalf("re-encoded payload %q does not decode: %v", once, err)
		}
		twice, err := json.Marshal(d2)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("payload changed in a round trip:\n%s\n%s", once, twice)
		}
	})
}
