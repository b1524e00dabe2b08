package state

import (
	"hash/maphash"
	"unsafe"
)

// idTable maps user ids to their positions in an Index. A million ids
// held as a map[string]int32 plus a []string cost some 100 bytes each
// beyond the ids' own bytes (a string header in the map and in the slice,
// an allocation per id rounded up to its size class), and the collector
// scans every one of them at every cycle. Here the ids' bytes live in
// large chunks, each id is one uint64 naming its chunk, offset and
// length, and the map is keyed by a 64-bit hash: nothing in it holds a
// pointer but the chunk list, so a cycle skips it, and an id costs its
// bytes plus about 30.
//
// Two ids with one hash are rare but legal: the first keeps the hash
// slot, later ones go to clash, a map by the id itself.
type idTable struct {
	seed   maphash.Seed
	hash   func(maphash.Seed, string) uint64 // maphash.String; tests make ids clash
	slot   map[uint64]int32
	clash  map[string]int32
	refs   []uint64 // position → idRef
	chunks [][]byte
	// open is 1 + the index of the chunk short ids are appended to, 0
	// before the first: a chunk of one long id is never appended to.
	open int
}

const (
	chunkSize = 64 << 10
	// An id longer than ownChunk gets a chunk of its own, so that a
	// chunk wastes at most ownChunk bytes at its end.
	ownChunk = 4 << 10
	offBits  = 20 // offsets within a chunk, < 1 MiB
	lenBits  = 20 // lengths, < 1 MiB; wholeChunk means the id is its chunk
	// wholeChunk marks an id that fills a chunk of its own, whatever its
	// length.
	wholeChunk = 1<<lenBits - 1
)

func newIDTable(n int) idTable {
	return idTable{seed: maphash.MakeSeed(), hash: maphash.String, slot: make(map[uint64]int32, n), refs: make([]uint64, 0, n)}
}

func (t *idTable) len() int { return len(t.refs) }

// id is the id at position i. The string shares the chunk's bytes, which
// are never written again, so it stays valid for as long as it is used.
func (t *idTable) id(i int32) string {
	r := t.refs[i]
	c := t.chunks[r>>(offBits+lenBits)]
	off := int(r >> lenBits & (1<<offBits - 1))
	n := int(r & (1<<lenBits - 1))
	if n == wholeChunk {
		n = len(c)
	}
	if n == 0 {
		return ""
	}
	return unsafe.String(&c[off], n)
}

// find returns the position of id.
func (t *idTable) find(id string) (int32, bool) {
	i, ok := t.slot[t.hash(t.seed, id)]
	if !ok {
		return 0, false
	}
	if t.id(i) == id {
		return i, true
	}
	i, ok = t.clash[id]
	return i, ok
}

// add appends id, which find does not know, and returns its position.
func (t *idTable) add(id string) int32 {
	i := int32(len(t.refs))
	t.refs = append(t.refs, t.store(id))
	h := t.hash(t.seed, id)
	if _, taken := t.slot[h]; !taken {
		t.slot[h] = i
		return i
	}
	if t.clash == nil {
		t.clash = map[string]int32{}
	}
	t.clash[t.id(i)] = i
	return i
}

// store copies id's bytes into a chunk and returns its reference.
func (t *idTable) store(id string) uint64 {
	if len(id) > ownChunk {
		t.chunks = append(t.chunks, []byte(id))
		return uint64(len(t.chunks)-1)<<(offBits+lenBits) | wholeChunk
	}
	if t.open == 0 || chunkSize-len(t.chunks[t.open-1]) < len(id) {
		t.chunks = append(t.chunks, make([]byte, 0, chunkSize))
		t.open = len(t.chunks)
	}
	c := t.chunks[t.open-1]
	off := len(c)
	t.chunks[t.open-1] = append(c, id...)
	return uint64(t.open-1)<<(offBits+lenBits) | uint64(off)<<lenBits | uint64(len(id))
}
