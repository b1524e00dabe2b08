package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// BenchmarkSendBinary is one delivery of a typical event as the notifier
// makes it (SendBinary), to a local receiver, 16 at a time.
func BenchmarkSendBinary(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	s, err := New(Config{Name: "bench", URL: srv.URL + "/hook"})
	if err != nil {
		b.Fatal(err)
	}
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "12345", Status: "Associated", Email: "teacher.one@school.example",
		Raw: []byte(`{"userId":12345,"email":"teacher.one@school.example","status":"Associated","itsIdHash":"hash12345="}`)}
	e, err := events.New(events.Spec{Type: events.TypeAssociated, User: u, Previous: &u, Observed: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		b.Fatal(err)
	}
	bin, ok := events.AsBinary(h, body)
	if !ok {
		b.Fatal("AsBinary refused the event")
	}
	b.ReportAllocs()
	b.SetParallelism(8) // 16 on two cores, as SINK_CONCURRENCY
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for pb.Next() {
			if err := s.SendBinary(ctx, bin); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
