package events

import (
	"context"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
)

// FromHeaders decodes binary mode itself; binding.ToEvent, which it used
// before, must agree on every message, valid or not.
func TestReadBinaryMatchesBinding(t *testing.T) {
	u := User{Source: "vpp", SourceKind: KindVPP, ID: "a b\"%ü", Status: "Registered", Email: "Ünïcode"}
	e, err := New(Spec{Type: TypeRegistered, User: u, Observed: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := ToHeaders(e)
	if err != nil {
		t.Fatal(err)
	}
	canon := Headers{}
	for k, v := range h {
		if len(k) > 3 && k[:3] == "ce-" {
			k = "Ce-" + string(k[3]-'a'+'A') + k[4:]
		}
		canon[k] = v
	}
	cases := []struct {
		name string
		h    Headers
		body []byte
	}{
		{"event", h, body},
		{"canonical keys", canon, body},
		{"no body", h, nil},
		{"v0.3", Headers{"ce-specversion": {"0.3"}, "ce-id": {"1"}, "ce-source": {"s"}, "ce-type": {"t"}, "ce-x": {"y%20z"}}, nil},
		{"bad time", Headers{"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-source": {"s"}, "ce-type": {"t"}, "ce-time": {"yesterday"}}, nil},
		{"bad source", Headers{"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-source": {"%"}, "ce-type": {"t"}}, []byte("x")},
		{"empty value", Headers{"ce-specversion": {"1.0"}, "ce-id": {}, "ce-subject": {""}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &headerMessage{h: c.h, body: c.body, version: specs.Version(percentDecode(get(c.h, headerPrefix+"specversion")))}
			got, gerr := readBinary(m)
			want, werr := binding.ToEvent(context.Background(), m)
			if (gerr != nil) != (werr != nil) {
				t.Fatalf("errors differ: %v / %v", gerr, werr)
			}
			if gerr != nil {
				return
			}
			if got.String() != want.String() || string(got.Data()) != string(want.Data()) || got.Validate() == nil != (want.Validate() == nil) {
				t.Fatalf("events differ:\n%s\n%s", got, want)
			}
		})
	}
}
