package vpp2_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
	"github.com/rollcall/rollcall/pkg/events"
)

// BenchmarkFullListing lists 10,000 users (a tenth retired, each with an
// active re-creation) in pages of 500 over HTTP: the client's cost per
// full run, decode and merge included, for docs/BENCHMARKS.md.
func BenchmarkFullListing(b *testing.B) {
	dir := vpptest.NewServer(testSToken)
	for i := range 10000 {
		key := fmt.Sprintf("client-%d", i)
		dir.Put(vu(int64(i+1), key, vpptest.StatusAssociated))
		if i%10 == 0 {
			dir.Put(vu(int64(100000+i), key, vpptest.StatusRetired))
		}
	}
	fake := vpp2test.NewServer(testSToken, dir)
	fake.SetPageSize(500)
	fake.SetMaxRequestPerSecond(1 << 20)
	srv := httptest.NewServer(fake)
	b.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "bench", BaseURL: srv.URL + "/mdm/v2", SToken: testSToken, MaxRequestsPerSecond: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var n counter
		if _, err := c.Stream(context.Background(), sources.Request{Full: true}, &n); err != nil {
			b.Fatal(err)
		}
		if n.users != 10000 {
			b.Fatalf("%d users, want 10000", n.users)
		}
	}
}

// counter counts the users of a listing without keeping them.
type counter struct{ users int }

func (c *counter) Page(u []events.User) error { c.users += len(u); return nil }
func (c *counter) Replace(events.User) error  { return nil }
func (c *counter) Restart()                   { c.users = 0 }
