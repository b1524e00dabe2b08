package state

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

func benchRecord(b *testing.B) []byte {
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "3f2a9c1e-0000-4000-8000-00000000002a", UserName: "operator42",
		Email: "operator42@msp.example", FirstName: "Op42", LastName: "Erator", Status: "enabled", Role: "CompanyAdministrator",
		OrganizationID: "0rg00001-0000-4000-8000-000000000000",
		Raw:            json.RawMessage(`{"instanceUid":"3f2a9c1e-0000-4000-8000-00000000002a","organizationUid":"0rg00001-0000-4000-8000-000000000000","userName":"operator42","status":"Enabled","role":"CompanyAdministrator","profile":{"firstName":"Op42","lastName":"Erator","title":null,"email":"operator42@msp.example","address":null,"phone":null},"credentials":{"userName":"operator42","password":null}}`)}
	body, err := json.Marshal(Record{User: u, Fingerprint: u.Fingerprint()})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkScanRecord is what loading the index costs per user besides
// the KV watch: the fast scan of a stored record for its fingerprint and
// status, against decoding the record in full as Users.Load does.
func BenchmarkScanRecord(b *testing.B) {
	body := benchRecord(b)
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := scanRecord(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var r Record
			if err := json.Unmarshal(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkScanIndex is diff.Scan over 100k unchanged users against the
// poller's index, which marks the listed users itself.
func BenchmarkScanIndex(b *testing.B) {
	const n = 100_000
	x := NewIndex(n)
	snap := make([]events.User, n)
	for i := range snap {
		u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i),
			UserName: fmt.Sprint("operator", i), Status: "enabled", Role: "CompanyAdministrator"}
		snap[i] = u
		x.set(u.ID, uint64(i+1), u.Digest(), diff.Present)
	}
	in := diff.Input{Source: "veeam", Kind: events.KindVeeam, Known: x, Snapshot: snap, Complete: true}
	b.ReportAllocs()
	for b.Loop() {
		if p, err := diff.Scan(in); err != nil || len(p.Missing) != 0 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "users/s")
}

// BenchmarkSecretCheck is the check loading the index makes of every
// stored record for secrets an earlier release left in raw: ScrubRaw's
// walk, against the one-pass MayHoldSecret that rules a record out first.
func BenchmarkSecretCheck(b *testing.B) {
	body, err := events.ScrubRaw(benchRecord(b)) // as stored
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ScrubRaw", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if clean, err := events.ScrubRaw(body); err != nil || len(clean) != len(body) {
				b.Fatal("a stored record changed")
			}
		}
	})
	b.Run("MayHoldSecret", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if events.MayHoldSecret(body) {
				b.Fatal("a secret in a stored record")
			}
		}
	})
}
