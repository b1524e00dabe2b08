package bus_test

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/pkg/events"
)

// BenchmarkMsg builds the NATS message of one event: subject, CloudEvents
// binary-mode headers with Nats-Msg-Id, and the body.
func BenchmarkMsg(b *testing.B) {
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "1234567", Email: "person1234567@school.example",
		ClientUserID: "client-1234567", Status: events.StatusAssociated,
		Raw: []byte(`{"userId":1234567,"email":"person1234567@school.example","clientUserIdStr":"client-1234567","status":"Associated","itsIdHash":"hash1234567="}`)}
	prev := u
	prev.Status = events.StatusRegistered
	e, err := events.New(events.Spec{Type: events.TypeAssociated, PrevRevision: 42, User: u, Previous: &prev, Reason: events.ReasonStatus,
		Changes: []events.Change{{Field: "status", From: prev.Status, To: u.Status}}, Observed: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m, err := bus.Msg(e)
		if err != nil || m.Subject == "" {
			b.Fatal(err)
		}
	}
}
