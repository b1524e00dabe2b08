package events_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/rollcall/rollcall/pkg/events"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func sample(t *testing.T, typ string) events.Event {
	t.Helper()
	prev := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb", UserName: "Alpha", Status: "Enabled", Role: "CompanyAdministrator"}
	u := prev
	u.Role = "CompanyOwner"
	u.Email = "Ünïcode \"quoted\" 100%@example.com"
	u.Raw = json.RawMessage(`{"instanceUid":"c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb"}`)
	e, err := events.New(events.Spec{Type: typ, PrevRevision: 4, User: u, Previous: &prev, Changes: events.Diff(prev, u), Reason: events.ReasonRole, Observed: t0})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestNewFillsEnvelope(t *testing.T) {
	e := sample(t, events.TypeRoleChanged)
	if err := events.Validate(e); err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"specversion":     {e.SpecVersion(), "1.0"},
		"type":            {e.Type(), "user.roleChanged"},
		"source":          {e.Source(), "urn:rollcall:source:veeam"},
		"subject":         {e.Subject(), "c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb"},
		"datacontenttype": {e.DataContentType(), "application/json"},
		"sourcekind":      {e.Extensions()["sourcekind"].(string), "veeam"},
		"time":            {e.Time().Format(time.RFC3339), "2026-11-23T12:00:00Z"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if len(e.ID()) != 32 {
		t.Errorf("id %q is not 32 hex digits", e.ID())
	}
}

func TestIDDeterministic(t *testing.T) {
	base := events.ID("vpp", "1", events.TypeAssociated, 3, "fp")
	if again := events.ID("vpp", "1", events.TypeAssociated, 3, "fp"); again != base {
		t.Fatalf("same change, different ids: %s %s", base, again)
	}
	variants := map[string]string{
		"source":      events.ID("vpp2", "1", events.TypeAssociated, 3, "fp"),
		"user":        events.ID("vpp", "2", events.TypeAssociated, 3, "fp"),
		"type":        events.ID("vpp", "1", events.TypeRetired, 3, "fp"),
		"revision":    events.ID("vpp", "1", events.TypeAssociated, 4, "fp"),
		"fingerprint": events.ID("vpp", "1", events.TypeAssociated, 3, "fq"),
		// Field boundaries must matter: ("vpp","11") is not ("vpp1","1").
		"boundary": events.ID("vpp1", "", events.TypeAssociated, 3, "fp"),
	}
	seen := map[string]string{base: "base"}
	for name, id := range variants {
		if other, dup := seen[id]; dup {
			t.Errorf("%s change shares id with %s", name, other)
		}
		seen[id] = name
	}
	// The constructor uses it: the same spec twice gives one id, a different
	// observation time does not change it.
	a, b := sample(t, events.TypeUpdated), sample(t, events.TypeUpdated)
	if a.ID() != b.ID() {
		t.Fatal("same spec, different ids")
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	for _, typ := range events.Types {
		t.Run(typ, func(t *testing.T) {
			e := sample(t, typ)
			h, body, err := events.ToHeaders(e)
			if err != nil {
				t.Fatal(err)
			}
			if h["Nats-Msg-Id"][0] != e.ID() || h["ce-id"][0] != e.ID() {
				t.Fatalf("Nats-Msg-Id/ce-id = %v/%v, want %s", h["Nats-Msg-Id"], h["ce-id"], e.ID())
			}
			if h["Content-Type"][0] != "application/json" || h["ce-specversion"][0] != "1.0" || h["ce-sourcekind"][0] != "veeam" {
				t.Fatalf("headers = %v", h)
			}
			for k, v := range h {
				for _, c := range v[0] {
					if c <= ' ' || c > '~' || c == '"' {
						t.Fatalf("header %s value %q is not percent-encoded", k, v[0])
					}
				}
			}
			got, err := events.FromHeaders(h, body)
			if err != nil {
				t.Fatal(err)
			}
			if err := events.Validate(got); err != nil {
				t.Fatal(err)
			}
			if got.String() != e.String() {
				t.Fatalf("round trip changed the event:\n%s\n%s", got, e)
			}
			d, _ := events.DecodeData(got)
			if !strings.Contains(d.User.Email, "Ünïcode") {
				t.Fatalf("data lost unicode: %q", d.User.Email)
			}
		})
	}
}

func TestPercentEncodedSubject(t *testing.T) {
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "a b\"%ü", Status: "Registered"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: t0})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		t.Fatal(err)
	}
	if got := h["ce-subject"][0]; got != "a%20b%22%25%C3%BC" {
		t.Fatalf("ce-subject = %q", got)
	}
	back, err := events.FromHeaders(h, body)
	if err != nil || back.Subject() != u.ID {
		t.Fatalf("subject back = %q, %v", back.Subject(), err)
	}
}

func TestFromHeadersStructured(t *testing.T) {
	e := sample(t, events.TypeUpdated)
	body, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.FromHeaders(events.Headers{"Content-Type": {"application/cloudevents+json"}}, body)
	if err != nil || got.ID() != e.ID() {
		t.Fatalf("structured decode: %v %v", got.ID(), err)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := map[string]func(e *events.Event){
		"unknown type":       func(e *events.Event) { e.SetType("user.exploded") },
		"foreign source":     func(e *events.Event) { e.SetSource("https://example.com") },
		"missing sourcekind": func(e *events.Event) { e.SetExtension("sourcekind", nil) },
		"subject mismatch":   func(e *events.Event) { e.SetSubject("someone-else") },
		"data not json":      func(e *events.Event) { _ = e.SetData("application/json", []byte("{")) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			e := sample(t, events.TypeUpdated)
			mutate(&e)
			if err := events.Validate(e); err == nil {
				t.Fatal("Validate accepted a broken event")
			}
		})
	}
}

func TestSchemas(t *testing.T) {
	for _, typ := range events.Types {
		t.Run(typ, func(t *testing.T) {
			raw, err := events.Schema(typ)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			c := jsonschema.NewCompiler()
			if err := c.AddResource(typ+".json", doc); err != nil {
				t.Fatal(err)
			}
			sch, err := c.Compile(typ + ".json")
			if err != nil {
				t.Fatal(err)
			}
			valid := func(e events.Event) error {
				b, _ := json.Marshal(e)
				inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				return sch.Validate(inst)
			}
			e := sample(t, typ)
			d, _ := events.DecodeData(e)
			d.Reason = map[string]string{events.TypeRegistered: "new", events.TypeAssociated: "status", events.TypeRetired: "removed", events.TypeRoleChanged: "role", events.TypeUpdated: "fields"}[typ]
			_ = e.SetData("application/json", d)
			if err := valid(e); err != nil {
				t.Fatalf("event does not match its schema: %v", err)
			}
			other := sample(t, events.TypeRegistered)
			if typ != events.TypeRegistered {
				if err := valid(other); err == nil {
					t.Fatal("schema accepted an event of another type")
				}
			}
		})
	}
	if _, err := events.Schema("user.nope"); err == nil {
		t.Fatal("schema for unknown type")
	}
}
