package events_test

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

var sinkString string

func BenchmarkEncodeKey(b *testing.B) {
	for _, tc := range []struct{ name, id string }{
		{"vpp-int", "1234567"},
		{"uuid", "3f2a9c1e-0000-4000-8000-00000000002a"},
		{"email", "first.last@school.example"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkString = events.EncodeKey(tc.id)
			}
		})
	}
}

func BenchmarkDecodeKey(b *testing.B) {
	for _, tc := range []struct{ name, id string }{
		{"vpp-int", "1234567"},
		{"uuid", "3f2a9c1e-0000-4000-8000-00000000002a"},
		{"email", "first.last@school.example"},
	} {
		key := events.EncodeKey(tc.id)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := events.DecodeKey(key)
				if err != nil {
					b.Fatal(err)
				}
				sinkString = s
			}
		})
	}
}

func benchUser() events.User {
	return events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "1234567", Email: "person1234567@school.example",
		ClientUserID: "client-1234567", Status: events.StatusAssociated,
		Raw: []byte(`{"userId":1234567,"email":"person1234567@school.example","clientUserIdStr":"client-1234567","status":"Associated","itsIdHash":"hash1234567="}`)}
}

func benchSpec() events.Spec {
	u := benchUser()
	prev := u
	prev.Status = events.StatusRegistered
	return events.Spec{Type: events.TypeAssociated, PrevRevision: 42, User: u, Previous: &prev, Reason: events.ReasonStatus,
		Changes: []events.Change{{Field: "status", From: prev.Status, To: u.Status}}, Observed: time.Now()}
}

func BenchmarkFingerprint(b *testing.B) {
	u := benchUser()
	b.ReportAllocs()
	for b.Loop() {
		sinkString = u.Fingerprint()
	}
}

func BenchmarkID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkString = events.ID("vpp", "1234567", events.TypeAssociated, 42, "0123456789abcdef0123456789abcdef")
	}
}

func BenchmarkNew(b *testing.B) {
	s := benchSpec()
	b.ReportAllocs()
	for b.Loop() {
		e, err := events.New(s)
		if err != nil {
			b.Fatal(err)
		}
		sinkString = e.ID()
	}
}

func BenchmarkToHeaders(b *testing.B) {
	e, err := events.New(benchSpec())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h, body, err := events.ToHeaders(e)
		if err != nil || len(h) == 0 || len(body) == 0 {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromHeaders(b *testing.B) {
	e, err := events.New(benchSpec())
	if err != nil {
		b.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := events.FromHeaders(h, body)
		if err != nil {
			b.Fatal(err)
		}
		sinkString = got.ID()
	}
}
