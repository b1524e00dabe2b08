package state

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"testing"
)

// The table gives back every id it was given, whatever its length (empty,
// short, longer than a shared chunk allows, longer than a length field
// holds), finds each at its position, and finds none it was not given:
// with real hashes and with every id's hash the same.
func TestIDTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(maphash.Seed, string) uint64
	}{
		{"hashed", maphash.String},
		{"every hash clashes", func(maphash.Seed, string) uint64 { return 7 }},
		{"two buckets", func(_ maphash.Seed, s string) uint64 { return uint64(len(s) % 2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := newIDTable(0)
			tab.hash = tc.hash
			rng := rand.New(rand.NewPCG(1, 2))
			ids := []string{"", "a", strings.Repeat("x", ownChunk), strings.Repeat("y", ownChunk+1), strings.Repeat("z", 1<<lenBits+3), "\x00\xff", strings.Repeat("c", chunkSize), "after"}
			for i := range 3000 {
				ids = append(ids, fmt.Sprintf("%08x-0000-4000-8000-%012x", rng.Uint32(), i))
				if i%500 == 0 {
					ids = append(ids, strings.Repeat("L", 100+rng.IntN(3*ownChunk)))
				}
			}
			seen := map[string]bool{}
			var uniq []string
			for _, id := range ids {
				if !seen[id] {
					seen[id] = true
					uniq = append(uniq, id)
				}
			}
			for i, id := range uniq {
				if _, ok := tab.find(id); ok {
					t.Fatalf("id %d found before it was added", i)
				}
				// A copy the caller may reuse: the table keeps its own.
				b := []byte(id)
				if got := tab.add(string(b)); got != int32(i) {
					t.Fatalf("add %d returned %d", i, got)
				}
				clear(b)
			}
			if tab.len() != len(uniq) {
				t.Fatalf("len %d, want %d", tab.len(), len(uniq))
			}
			for i, id := range uniq {
				if got := tab.id(int32(i)); got != id {
					t.Fatalf("id(%d) = %.20q (len %d), want %.20q (len %d)", i, got, len(got), id, len(id))
				}
				if got, ok := tab.find(id); !ok || got != int32(i) {
					t.Fatalf("find(%.20q) = %d, %v; want %d", id, got, ok, i)
				}
			}
			for _, id := range []string{"b", strings.Repeat("x", ownChunk-1), "00000000-0000-4000-8000-000000000000"} {
				if _, ok := tab.find(id); ok {
					t.Errorf("found %.20q, never added", id)
				}
			}
		})
	}
}

// An index of many users holds a small fraction of what a map of strings
// did: the ids' bytes plus about 30 bytes each in the table.
func BenchmarkIDTableAdd(b *testing.B) {
	ids := make([]string, 100_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i)
	}
	b.ReportAllocs()
	for b.Loop() {
		tab := newIDTable(len(ids))
		for _, id := range ids {
			tab.add(id)
		}
	}
}
