package sinktest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// Observed is the fixed observation time of every fixture event.
var Observed = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// Fixture is a named example event.
type Fixture struct {
	Name  string // file-name friendly, e.g. "retired-removed"
	Event events.Event
}

// Fixtures returns one event for every event type and reason a sink must
// render: registered, associated, retired by status, retired by removal,
// role changed and updated. They are deterministic, so golden files built
// from them are stable.
func Fixtures(t testing.TB) []Fixture {
	t.Helper()
	vppRegistered := events.User{
		Source: "vpp", SourceKind: events.KindVPP, ID: "2079870000000005",
		Email: "jane.appleseed@example.com", ClientUserID: "jane-1", Status: "Registered",
		Raw: json.RawMessage(`{"userId":2079870000000005,"status":"Registered"}`),
	}
	vppAssociated := vppRegistered
	vppAssociated.Status = "Associated"
	vppRetired := vppAssociated
	vppRetired.Status = "Retired"

	veeamAdmin := events.User{
		Source: "veeam", SourceKind: events.KindVeeam, ID: "c3728f5b-7a3e-4f1c-9d2b-0e8a1b6f4d21",
		UserName: "Alpha", FirstName: "Ada", LastName: "Lovelace", Status: "enabled",
		Role: "CompanyAdministrator", OrganizationID: "7d1f0c8e-0000-4000-8000-000000000001",
	}
	veeamOwner := veeamAdmin
	veeamOwner.Role = "CompanyOwner"
	veeamGone := veeamOwner
	veeamGone.Status = events.StatusRemoved
	noMail := veeamOwner
	noMail.Email = "a@x.example"
	newMail := noMail
	newMail.Email = "b@x.example"

	mk := func(name string, s events.Spec) Fixture {
		t.Helper()
		s.Observed = Observed
		e, err := events.New(s)
		if err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
		if err := events.Validate(e); err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
		return Fixture{Name: name, Event: e}
	}
	return []Fixture{
		mk("registered", events.Spec{Type: events.TypeRegistered, User: vppRegistered, Reason: events.ReasonNew}),
		mk("associated", events.Spec{Type: events.TypeAssociated, PrevRevision: 3, User: vppAssociated, Previous: &vppRegistered,
			Changes: events.Diff(vppRegistered, vppAssociated), Reason: events.ReasonStatus}),
		mk("retired-status", events.Spec{Type: events.TypeRetired, PrevRevision: 4, User: vppRetired, Previous: &vppAssociated,
			Changes: events.Diff(vppAssociated, vppRetired), Reason: events.ReasonStatus}),
		mk("retired-removed", events.Spec{Type: events.TypeRetired, PrevRevision: 9, User: veeamGone, Previous: &veeamOwner,
			Changes: events.Diff(veeamOwner, veeamGone), Reason: events.ReasonRemoved}),
		mk("role-changed", events.Spec{Type: events.TypeRoleChanged, PrevRevision: 7, User: veeamOwner, Previous: &veeamAdmin,
			Changes: events.Diff(veeamAdmin, veeamOwner), Reason: events.ReasonRole}),
		mk("updated", events.Spec{Type: events.TypeUpdated, PrevRevision: 8, User: newMail, Previous: &noMail,
			Changes: events.Diff(noMail, newMail), Reason: events.ReasonFields}),
	}
}

// NewEvent returns the role-changed fixture: a valid, fully populated event.
func NewEvent(t testing.TB) events.Event {
	t.Helper()
	for _, f := range Fixtures(t) {
		if f.Name == "role-changed" {
			return f.Event
		}
	}
	panic("unreachable")
}
