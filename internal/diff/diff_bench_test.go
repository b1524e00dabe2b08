package diff_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// benchUsers is a Veeam directory of n users.
func benchUsers(n int) []events.User {
	out := make([]events.User, n)
	for i := range out {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i)
		out[i] = events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, UserName: fmt.Sprintf("operator%d", i),
			Email: fmt.Sprintf("operator%d@msp.example", i), FirstName: fmt.Sprintf("Op%d", i), LastName: "Erator",
			Status: "enabled", Role: "CompanyAdministrator", OrganizationID: "0rg00001-0000-4000-8000-000000000000",
			Raw: []byte(`{"instanceUid":"` + id + `","userName":"operator","status":"Enabled","role":"CompanyAdministrator"}`)}
	}
	return out
}

func benchCompute(b *testing.B, n, changed int) {
	snap := benchUsers(n)
	prev := make(map[string]diff.Prev, n)
	for i, u := range snap {
		prev[u.ID] = diff.Prev{User: u, Revision: uint64(i + 1)}
	}
	snap = append([]events.User(nil), snap...)
	for i := 0; i < changed; i++ {
		snap[i*(n/changed)].Role = "CompanyLocationUser"
	}
	in := diff.Input{Source: "veeam", Kind: events.KindVeeam, Previous: prev, Snapshot: snap, Complete: true, Observed: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		r, err := diff.Compute(in)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Events) != changed {
			b.Fatalf("%d events, want %d", len(r.Events), changed)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "users/s")
}

// BenchmarkCompute is a complete snapshot of 10k users against their
// previous state: nothing changed, and 1% changed.
func BenchmarkCompute(b *testing.B) {
	b.Run("unchanged", func(b *testing.B) { benchCompute(b, 10_000, 0) })
	b.Run("churn1pct", func(b *testing.B) { benchCompute(b, 10_000, 100) })
}

// BenchmarkScan is the poller's first pass over a complete snapshot of 10k
// unchanged users with only the compact index of them (diff.Known), the
// work every steady-state run does per user besides decoding.
func BenchmarkScan(b *testing.B) {
	snap := benchUsers(10_000)
	known := knownMap{}
	for i, u := range snap {
		known[u.ID] = diff.Entry{Revision: uint64(i + 1), Digest: u.Digest()}
	}
	in := diff.Input{Source: "veeam", Kind: events.KindVeeam, Known: known, Snapshot: snap, Complete: true, Observed: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		p, err := diff.Scan(in)
		if err != nil || len(p.Need) != 0 || len(p.Missing) != 0 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(snap))*float64(b.N)/b.Elapsed().Seconds(), "users/s")
}
