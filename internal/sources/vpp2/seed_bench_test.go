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
)

// BenchmarkSeed puts n users into the fake's directory and lists them all
// once through the client, at the fake's default page size: what seeding
// a source from the simulator costs. Linear: 100k costs about ten times
// 10k (docs/BENCHMARKS.md, issue 17).
func BenchmarkSeed(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("users=%dk", n/1000), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dir := vpptest.NewServer(testSToken)
				for i := range n {
					dir.Put(vu(int64(i+1), fmt.Sprintf("client-%d", i), vpptest.StatusAssociated))
				}
				fake := vpp2test.NewServer(testSToken, dir)
				fake.SetMaxRequestPerSecond(1 << 20)
				srv := httptest.NewServer(fake)
				c, err := vpp2.New(vpp2.Config{Name: "bench", BaseURL: srv.URL + "/mdm/v2", SToken: testSToken, MaxRequestsPerSecond: 1 << 20})
				if err != nil {
					b.Fatal(err)
				}
				var got counter
				if _, err := c.Stream(context.Background(), sources.Request{Full: true}, &got); err != nil {
					b.Fatal(err)
				}
				srv.Close()
				if got.users != n {
					b.Fatalf("%d users, want %d", got.users, n)
				}
			}
		})
	}
}
