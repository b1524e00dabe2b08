package state

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"testing"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// review16IDs are ids that differ by one byte, are prefixes of each
// other, are empty, hold NUL bytes or invalid UTF-8, and sit on every
// length boundary of the table (ownChunk, chunkSize, the length field).
func review16IDs() []string {
	ids := []string{"", "\x00", "\x00\x00", "a", "a\x00", "ab", "abc", "abd", "\xff\xfe", "\xc3\x28", "é", "e\u0301"}
	for _, n := range []int{ownChunk - 1, ownChunk, ownChunk + 1, 65535, chunkSize, chunkSize + 1, 1 << 20, 1<<lenBits - 1, 1<<lenBits + 1} {
		s := strings.Repeat("p", n)
		ids = append(ids, s, s[:n-1]+"q") // same length, last byte differs
	}
	for i := range 5000 {
		ids = append(ids, fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i))
	}
	return ids
}

// Every id goes in, every id comes out byte for byte, at its own position
// and with its own entry, whatever the hash does: ids clashing with
// prefixes of themselves, an empty id clashing with everything, Mark and
// Lookup through the clash map, an id set again after it was removed.
func TestReview16IndexIDsSurviveClashes(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(maphash.Seed, string) uint64
	}{
		{"maphash", maphash.String},
		{"all clash", func(maphash.Seed, string) uint64 { return 0 }},
		{"by first byte", func(_ maphash.Seed, s string) uint64 {
			if s == "" {
				return 1 << 63
			}
			return uint64(s[0])
		}},
		{"by length", func(_ maphash.Seed, s string) uint64 { return uint64(len(s)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex(0)
			x.ids.hash = tc.hash
			ids := review16IDs()
			for i, id := range ids {
				var d events.Digest
				d[0], d[1] = byte(i), byte(i>>8)
				x.set(id, uint64(i+1), d, diff.Present)
			}
			if x.Len() != len(ids) {
				t.Fatalf("len %d, want %d", x.Len(), len(ids))
			}
			// Removed, then back: the same entry, updated in place.
			x.set("abc", 1_000_000, events.Digest{}, diff.Removed)
			x.set("abc", 1_000_001, events.Digest{}, diff.Present)
			if x.Len() != len(ids) {
				t.Fatalf("len %d after re-adding, want %d", x.Len(), len(ids))
			}
			for i, id := range ids {
				e, ok := x.Lookup(id)
				want := uint64(i + 1)
				if id == "abc" {
					want = 1_000_001
				}
				if !ok || e.Revision != want {
					t.Fatalf("Lookup(%.20q, len %d) = %+v, %v; want revision %d", id, len(id), e, ok, want)
				}
			}
			for _, id := range []string{"abe", "a\x00\x00", "\x00\x00\x00", strings.Repeat("p", ownChunk+2), strings.Repeat("q", ownChunk)} {
				if _, ok := x.Lookup(id); ok {
					t.Errorf("Lookup(%.20q) found an id never added", id)
				}
			}
			x.StartMarks()
			for _, id := range ids[:len(ids)/2] {
				if _, known, again := x.Mark(id); !known || again {
					t.Fatalf("Mark(%.20q) = known %v again %v", id, known, again)
				}
			}
			i := 0
			x.RangeMarks(func(id string, _ diff.Gone, marked bool) bool {
				if id != ids[i] || marked != (i < len(ids)/2) {
					t.Fatalf("RangeMarks %d: %.20q marked %v, want %.20q marked %v", i, id, marked, ids[i], i < len(ids)/2)
				}
				i++
				return true
			})
			sorted := []string{ids[3], ids[0], ids[len(ids)-1], ids[1]}
			x.SortByRevision(sorted)
			if sorted[0] != ids[0] || sorted[1] != ids[1] || sorted[2] != ids[3] || sorted[3] != ids[len(ids)-1] {
				t.Errorf("SortByRevision gave %.10q", sorted)
			}
		})
	}
}

// The ids Range yields are views into the table's chunks. They stay
// valid, byte for byte, while the index grows (new chunks, a shared chunk
// filled up, ids of a chunk of their own) from other goroutines: run with
// -race.
func TestReview16RangeIDsStayValidWhileTheIndexGrows(t *testing.T) {
	x := NewIndex(0)
	for i := range 3000 {
		x.set(fmt.Sprintf("user-%06d", i), uint64(i+1), events.Digest{}, diff.Present)
	}
	var kept, want []string
	x.Range(func(id string, _ diff.Gone) bool {
		kept = append(kept, id)
		want = append(want, strings.Clone(id))
		return true
	})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				id := fmt.Sprintf("more-%d-%06d", g, i)
				if i%100 == 0 {
					id += strings.Repeat("L", ownChunk+i%3)
				}
				x.set(id, uint64(10_000+g*10_000+i), events.Digest{}, diff.Present)
			}
		}()
	}
	for range 20 {
		for i, id := range kept {
			if id != want[i] {
				t.Fatalf("kept id %d is now %q, was %q", i, id, want[i])
			}
		}
	}
	wg.Wait()
	for i, id := range kept {
		if id != want[i] {
			t.Fatalf("kept id %d is now %q, was %q", i, id, want[i])
		}
		if e, ok := x.Lookup(id); !ok || e.Revision != uint64(i+1) {
			t.Fatalf("Lookup(%q) = %+v, %v", id, e, ok)
		}
	}
	if x.Len() != 3000+2*3000 {
		t.Fatalf("len %d", x.Len())
	}
}
