package webhook

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/rollcall/rollcall/pkg/events"
)

// binaryHeaders must set exactly what cehttp.WriteRequest sets in binary
// mode, and the body must be the same bytes.
func TestBinaryHeadersMatchCloudEventsHTTP(t *testing.T) {
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "a b\"%ü", Status: "Registered", Email: "Ünïcode"}
	full, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 7200))})
	if err != nil {
		t.Fatal(err)
	}
	bare := event.New()
	bare.SetID("1")
	bare.SetSource("urn:x")
	bare.SetType("t")
	v03 := event.New(event.CloudEventsVersionV03)
	v03.SetID("2")
	v03.SetSource("urn:y")
	v03.SetType("t")
	v03.SetExtension("other", 3)
	_ = v03.SetData("text/plain", "hi")
	for _, e := range []events.Event{full, bare, v03} {
		want, _ := http.NewRequest(http.MethodPost, "http://x", nil)
		if err := cehttp.WriteRequest(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), want); err != nil {
			t.Fatal(err)
		}
		var wantBody []byte
		if want.Body != nil {
			wantBody, _ = io.ReadAll(want.Body)
		}
		got, _ := http.NewRequest(http.MethodPost, "http://x", nil)
		if !binaryHeaders(got.Header, e) {
			t.Fatalf("binaryHeaders refused %s", e)
		}
		if !reflect.DeepEqual(got.Header, want.Header) || string(e.Data()) != string(wantBody) {
			t.Fatalf("headers differ:\n got %v\nwant %v\nbody %q / %q", got.Header, want.Header, e.Data(), wantBody)
		}
	}
}
