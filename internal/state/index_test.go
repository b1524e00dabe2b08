package state

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

func TestScanRecordAgreesWithJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	var bodies [][]byte
	for range 500 {
		u := events.User{Source: "vpp", SourceKind: "vpp", ID: pick("1", "a.b@c", "x\"y"),
			Email:  pick("", "a@b", `q"uote\back`, "日本", "</script>&"),
			Status: pick("registered", "Retired", "REMOVED", "enabled", "removed"),
			Raw:    json.RawMessage(pick(`{}`, `{"status":"Removed","nested":{"a":[1,{"b":"}"}]}}`, `{"x":"\"status\":\"retired\""}`, `[1,2,{"status":"x"}]`, `null`))}
		b, err := json.Marshal(Record{User: u, Fingerprint: u.Fingerprint()})
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	// Shapes the fast path does not take: other field orders, spaces,
	// escapes in the status, a fingerprint missing or malformed.
	bodies = append(bodies,
		[]byte(`{"fingerprint":"00112233445566778899aabbccddeeff","user":{"raw":{"status":"removed"},"status":"retired"}}`),
		[]byte(` { "user" : { "status" : "Removed" } , "fingerprint" : "00112233445566778899aabbccddeeff" } `),
		[]byte(`{"user":{"status":"re\u006doved"},"fingerprint":"00112233445566778899aabbccddeeff"}`),
		[]byte(`{"user":{"id":"1","status":"retired"}}`),
		[]byte(`{"user":{"id":"1","status":"retired"},"fingerprint":"zz"}`),
		[]byte(`{"user":{"status":"retired"},"fingerprint":"00112233445566778899aabbccddeeff","extra":[{"a":"]"}]}`),
	)
	for _, b := range bodies {
		d, g, err := scanRecord(b)
		if err != nil {
			t.Fatalf("scanRecord(%s): %v", b, err)
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		want, ok := events.ParseDigest(rec.Fingerprint)
		if !ok {
			want = rec.User.Digest()
		}
		if d != want || g != diff.GoneOf(rec.User.Status) {
			t.Fatalf("scanRecord(%s) = %x %d, want %x %d", b, d, g, want, diff.GoneOf(rec.User.Status))
		}
	}
	for _, bad := range []string{``, `{`, `{"user":`, `[]`, `{"user":{"status":"x"},"fingerprint":"00112233445566778899aabbccddeeff"`} {
		if _, _, err := scanRecord([]byte(bad)); err == nil {
			t.Errorf("scanRecord(%q) accepted it", bad)
		}
	}
}

func FuzzScanRecord(f *testing.F) {
	f.Add([]byte(`{"user":{"id":"1","status":"retired","raw":{"a":"\\"}},"fingerprint":"00112233445566778899aabbccddeeff"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, g, ok := fastScan(b)
		if !ok {
			return
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return // the fast path does not validate what it skips
		}
		want, _ := events.ParseDigest(rec.Fingerprint)
		if d != want || g != diff.GoneOf(rec.User.Status) {
			t.Fatalf("fastScan(%q) = %x %d, json says %q %q", b, d, g, rec.Fingerprint, rec.User.Status)
		}
	})
}

func TestIndexFollowsTheKV(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "vpp")
	other := NewUsers(h.Users, "veeam")
	var writes []diff.Write
	for i := range 50 {
		status := events.StatusRegistered
		switch i % 5 {
		case 3:
			status = events.StatusRetired
		case 4:
			status = events.StatusRemoved
		}
		writes = append(writes, diff.Write{User: events.User{Source: "vpp", SourceKind: "vpp", ID: fmt.Sprintf("user.%d", i), Status: status}})
	}
	empty, err := users.LoadIndex(ctx)
	if err != nil || empty.Len() != 0 {
		t.Fatalf("empty index: %d %v", empty.Len(), err)
	}
	if err := users.Commit(ctx, writes, empty); err != nil {
		t.Fatal(err)
	}
	x, err := users.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full, err := users.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(full) || empty.Len() != len(full) || x.LastSeq() != empty.LastSeq() {
		t.Fatalf("index %d users (last %d), committed %d (last %d), KV %d", x.Len(), x.LastSeq(), empty.Len(), empty.LastSeq(), len(full))
	}
	for id, p := range full {
		want := diff.Entry{Revision: p.Revision, Digest: p.User.Digest(), Gone: diff.GoneOf(p.User.Status)}
		for _, idx := range []*Index{x, empty} {
			if e, ok := idx.Lookup(id); !ok || e != want {
				t.Fatalf("%s: index has %+v %v, KV %+v", id, e, ok, want)
			}
		}
	}
	valid := func(x *Index) bool {
		t.Helper()
		ok, err := users.Valid(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !valid(x) {
		t.Fatal("a fresh index is not valid")
	}
	// Another source's writes do not matter.
	if err := other.Apply(ctx, []diff.Write{{User: events.User{Source: "veeam", ID: "v", Status: "enabled"}}}); err != nil {
		t.Fatal(err)
	}
	if !valid(x) {
		t.Fatal("another source's write invalidated the index")
	}
	// Our own commits keep it valid.
	changed := writes[0]
	changed.User.Email = "new@example"
	changed.Revision = full["user.0"].Revision
	if err := users.Commit(ctx, []diff.Write{changed}, x); err != nil {
		t.Fatal(err)
	}
	if !valid(x) {
		t.Fatal("our own commit invalidated the index")
	}
	if e, _ := x.Lookup("user.0"); e.Digest != changed.User.Digest() {
		t.Fatal("commit did not update the index")
	}
	// Anyone else's write, or a delete, does.
	if _, err := h.Users.Put(ctx, events.StateKey("vpp", "user.1"), []byte(`{"user":{"id":"user.1","status":"associated"},"fingerprint":"00112233445566778899aabbccddeeff"}`)); err != nil {
		t.Fatal(err)
	}
	if valid(x) {
		t.Fatal("a foreign write left the index valid")
	}
	if err := h.Users.Delete(ctx, events.StateKey("vpp", "user.2")); err != nil {
		t.Fatal(err)
	}
	y, err := users.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := y.Lookup("user.2"); ok || y.Len() != len(full)-1 || !valid(y) {
		t.Fatalf("after a delete: %d users, user.2 present %v, valid %v", y.Len(), ok, valid(y))
	}
	// Records reads what changed, and leaves deleted keys out.
	recs, err := users.Records(ctx, []string{"user.0", "user.2", "nobody"})
	if err != nil || len(recs) != 1 || recs["user.0"].User.Email != "new@example" {
		t.Fatalf("records: %v %v", recs, err)
	}
}

// Scan marks the users a snapshot lists in the index itself: the missing
// ones, the duplicates and a second scan come out as with a set.
func TestScanWithIndexMarks(t *testing.T) {
	x := NewIndex(0)
	users := map[string]events.User{}
	for i, st := range []string{"enabled", "enabled", "retired", "removed", "enabled"} {
		u := events.User{Source: "s", SourceKind: events.KindVeeam, ID: fmt.Sprint("u", i), Status: st}
		users[u.ID] = u
		x.set(u.ID, uint64(i+1), u.Digest(), diff.GoneOf(st))
	}
	snap := []events.User{users["u0"], users["u2"], {Source: "s", ID: "new", Status: "enabled"}}
	for range 2 { // marks of the first scan must not leak into the second
		p, err := diff.Scan(diff.Input{Source: "s", Kind: events.KindVeeam, Known: x, Snapshot: snap, Complete: true})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(p.Missing) != "[u1 u4]" || p.Known != 3 || len(p.Need) != 0 {
			t.Fatalf("plan: missing %v known %d need %v", p.Missing, p.Known, p.Need)
		}
	}
	for _, dup := range [][]events.User{{users["u0"], users["u0"]}, {{ID: "n"}, {ID: "n"}}} {
		if _, err := diff.Scan(diff.Input{Source: "s", Known: x, Snapshot: dup}); err == nil {
			t.Fatalf("duplicate %s not reported", dup[0].ID)
		}
	}
	x.SortByRevision(nil)
	ids := []string{"u4", "u0", "u2"}
	x.SortByRevision(ids)
	if fmt.Sprint(ids) != "[u0 u2 u4]" {
		t.Fatalf("sorted by revision: %v", ids)
	}
}

// TestValidSeesAForeignWriteBeforeOurOwn: another writer changes a key
// after this index was checked and before it commits writes of its own
// (to other keys, at higher revisions). Checking only for writes after the
// index's last one would miss it for good; Valid must not.
func TestValidSeesAForeignWriteBeforeOurOwn(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "veeam")
	mk := func(id string) diff.Write {
		return diff.Write{User: events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, Status: "enabled"}}
	}
	x := NewIndex(0)
	if err := users.Commit(ctx, []diff.Write{mk("a"), mk("b"), mk("x")}, x); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		foreign func() error
	}{
		{"put of another key", func() error {
			e, _ := x.Lookup("x")
			_, err := h.Users.Update(ctx, events.StateKey("veeam", "x"), []byte(`{"user":{"id":"x","status":"removed"},"fingerprint":"00112233445566778899aabbccddeeff"}`), e.Revision)
			return err
		}},
		{"delete of another key", func() error { return h.Users.Delete(ctx, events.StateKey("veeam", "x")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := users.LoadIndex(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := users.Valid(ctx, x); err != nil || !ok {
				t.Fatalf("fresh index: valid %v, %v", ok, err)
			}
			if err := tc.foreign(); err != nil {
				t.Fatal(err)
			}
			// Our own commit to another key lands after the foreign write.
			a, _ := x.Lookup("a")
			w := mk("a")
			w.User.Email = tc.name
			w.Revision = a.Revision
			if err := users.Commit(ctx, []diff.Write{w}, x); err != nil {
				t.Fatal(err)
			}
			if ok, err := users.Valid(ctx, x); err != nil || ok {
				t.Fatalf("valid %v, %v after a foreign write interleaved with our own", ok, err)
			}
			// Put x back for the next case.
			if _, err := h.Users.Put(ctx, events.StateKey("veeam", "x"), mustRecord(t, mk("x").User)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// An over-long id is stored under its hashed key and loaded back by the id
// its record holds.
func TestIndexLoadsHashedKeys(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "veeam")
	long := strings.Repeat("L", 1500)
	w := diff.Write{User: events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: long, Status: "enabled"}}
	if err := users.Commit(ctx, []diff.Write{w}, NewIndex(0)); err != nil {
		t.Fatal(err)
	}
	x, err := users.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := x.Lookup(long); !ok || e.Digest != w.User.Digest() {
		t.Fatalf("over-long id not loaded by its id: %+v %v", e, ok)
	}
	recs, err := users.Records(ctx, []string{long})
	if err != nil || recs[long].User.ID != long {
		t.Fatalf("records: %v", err)
	}
}

func mustRecord(t *testing.T, u events.User) []byte {
	t.Helper()
	b, err := json.Marshal(Record{User: u, Fingerprint: u.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
