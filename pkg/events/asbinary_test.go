package events_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/rollcall/rollcall/pkg/events"
)

// binaryView is what a binary-mode delivery is made of: the ce-* headers
// and Content-Type.
func binaryView(h events.Headers) map[string]string {
	out := map[string]string{}
	for k, vs := range h {
		if strings.HasPrefix(strings.ToLower(k), "ce-") || strings.EqualFold(k, events.HeaderContentType) {
			out[k] = strings.Join(vs, "\x00")
		}
	}
	return out
}

// checkAsBinary fails unless AsBinary accepts only what decodes, with the
// same id, and encodes again to the same headers and body.
func checkAsBinary(t *testing.T, h events.Headers, body []byte) bool {
	t.Helper()
	b, ok := events.AsBinary(h, body)
	if !ok {
		return false
	}
	e, err := events.FromHeaders(h, body)
	if err != nil {
		t.Fatalf("AsBinary took a message FromHeaders rejects: %v (%q)", err, h)
	}
	if b.ID != e.ID() {
		t.Fatalf("AsBinary id %q, decoded %q", b.ID, e.ID())
	}
	h2, body2, err := events.ToHeaders(e)
	if err != nil {
		t.Fatalf("AsBinary took a message whose event does not encode: %v (%q)", err, h)
	}
	if got, want := binaryView(h), binaryView(h2); !maps.Equal(got, want) {
		t.Fatalf("AsBinary took headers that encode differently:\n sent as is %q\n re-encoded  %q", got, want)
	}
	if !bytes.Equal(b.Body, body2) || !bytes.Equal(body, body2) {
		t.Fatalf("AsBinary took a body that encodes differently: %q, re-encoded %q", body, body2)
	}
	return true
}

// plain is an event whose data has no escape (a backslash makes
// maySecret, and so AsBinary, say no).
func plain(t *testing.T, typ string) events.Event {
	t.Helper()
	prev := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "u-1", Email: "ünï@example.com", Status: "associated"}
	u := prev
	u.Status = "retired"
	u.Raw = json.RawMessage(`{"clientUserId":"u-1"}`)
	e, err := events.New(events.Spec{Type: typ, PrevRevision: 4, User: u, Previous: &prev, Changes: events.Diff(prev, u), Reason: events.ReasonRole, Observed: t0})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAsBinaryTakesWhatToHeadersWrites(t *testing.T) {
	for _, typ := range []string{events.TypeRoleChanged, events.TypeRetired} {
		e := plain(t, typ)
		e.SetSubject("ünï code \"user\" 100% x") // every kind of encoding
		h, body, err := events.ToHeaders(e)
		if err != nil {
			t.Fatal(err)
		}
		if !checkAsBinary(t, h, body) {
			t.Fatalf("AsBinary refused what ToHeaders wrote: %q", h)
		}
	}
}

func TestAsBinaryRefuses(t *testing.T) {
	e := plain(t, events.TypeRoleChanged)
	base, body, err := events.ToHeaders(e)
	if err != nil {
		t.Fatal(err)
	}
	with := func(k string, vs ...string) events.Headers {
		h := maps.Clone(base)
		if vs == nil {
			delete(h, k)
		} else {
			h[k] = vs
		}
		return h
	}
	secret, _ := json.Marshal(map[string]any{"user": map[string]any{"raw": map[string]any{"password": "hunter2"}}})
	cases := map[string]struct {
		h    events.Headers
		body []byte
	}{
		"time not in UTC":          {with("ce-time", "2026-11-23T13:00:00+01:00"), body},
		"zero time":                {with("ce-time", "0001-01-01T00:00:00Z"), body},
		"lower-case hex":           {with("ce-subject", "a%c3%bc"), body},
		"printable encoded":        {with("ce-subject", "%41"), body},
		"raw space":                {with("ce-subject", "a b"), body},
		"stray percent":            {with("ce-subject", "100%"), body},
		"invalid UTF-8":            {with("ce-subject", "%FF"), body},
		"trimmed by the decoder":   {with("ce-subject", "%20x"), body},
		"no id":                    {with("ce-id"), body},
		"no type":                  {with("ce-type"), body},
		"no source":                {with("ce-source"), body},
		"no specversion":           {with("ce-specversion"), body},
		"spec 0.3":                 {with("ce-specversion", "0.3"), body},
		"two ids":                  {with("ce-id", "a", "b"), body},
		"empty value":              {with("ce-sourcekind", ""), body},
		"canonicalised key":        {with("Ce-Id", "x"), body},
		"upper-case extension":     {with("ce-Foo", "x"), body},
		"extension name with dash": {with("ce-a-b", "x"), body},
		"ce-datacontenttype":       {with("ce-datacontenttype", "text/plain"), body},
		"structured":               {with(events.HeaderContentType, "application/cloudevents+json"), body},
		"lower-case content-type":  {with("content-type", "application/json"), body},
		"empty content-type":       {with(events.HeaderContentType, ""), body},
		"source not canonical":     {with("ce-source", "HTTP://Example.com/%7ex"), body},
		"data may hold a secret":   {base, secret},
	}
	for name, c := range cases {
		if checkAsBinary(t, c.h, c.body) {
			t.Errorf("%s: AsBinary took %q", name, c.h)
		}
	}
}

func FuzzAsBinary(f *testing.F) {
	f.Add("0123", "urn:rollcall:source:vpp", "user.associated", "ü 1%", "2026-11-23T12:00:00.5Z", "vpp", "application/json", `{"a":1}`)
	f.Add("x", "/a b", "t", "%C3%BC", "2026-11-23T12:00:00+01:00", "%FF", "", "")
	f.Add("%20x", "http://h/%7e", "t", "a%25", "2026-11-23T12:00:00Z", "Ab", "text/plain", "pass")
	f.Fuzz(func(t *testing.T, id, source, typ, subject, tm, ext, ct, body string) {
		h := events.Headers{"ce-specversion": {cloudevents.CloudEventsVersionV1}, "ce-id": {id}, "ce-source": {source},
			"ce-type": {typ}, "ce-subject": {subject}, "ce-time": {tm}, "ce-sourcekind": {ext}, events.HeaderMsgID: {id}}
		if ct != "" {
			h[events.HeaderContentType] = []string{ct}
		}
		checkAsBinary(t, h, []byte(body))
		// The same values as the encoder writes them must be taken when
		// they decode to an event that encodes the same way again.
		if e, err := events.FromHeaders(h, []byte(body)); err == nil {
			if h2, b2, err := events.ToHeaders(e); err == nil {
				checkAsBinary(t, h2, b2)
			}
		}
	})
}
