package state

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// LoadIndex of a bucket an old release wrote (a long id under its full
// reversible key) beside ids of every awkward shape: each id comes back
// once, byte for byte, from Lookup and Range, the legacy key moved.
func TestReview16LoadIndexOddIDsAndALegacyKey(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "veeam")
	ids := []string{"", "a", "a\x00", "a\x00b", "ab", "abc", "a.b*c>d e", "é",
		strings.Repeat("p", events.MaxKeyLen), strings.Repeat("p", events.MaxKeyLen+1),
		strings.Repeat("x", ownChunk), strings.Repeat("x", ownChunk+1), strings.Repeat("y", 1<<16)}
	var ws []diff.Write
	for _, id := range ids {
		ws = append(ws, diff.Write{User: events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, Status: "enabled"}})
	}
	if err := users.Commit(ctx, ws, NewIndex(0)); err != nil {
		t.Fatal(err)
	}
	// What a release before key hashing wrote for a long id.
	legacy := strings.Repeat("q", events.MaxKeyLen+7)
	lu := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: legacy, Status: "disabled"}
	if _, err := h.Users.Put(ctx, "veeam."+legacy, mustRecord(t, lu)); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, legacy)
	x, err := users.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(ids) {
		t.Fatalf("index of %d users, want %d", x.Len(), len(ids))
	}
	for _, id := range ids {
		if _, ok := x.Lookup(id); !ok {
			t.Errorf("Lookup(%.20q, len %d) not found after LoadIndex", id, len(id))
		}
	}
	var got []string
	x.Range(func(id string, _ diff.Gone) bool { got = append(got, id); return true })
	slices.Sort(got)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Range gave %d ids, not the %d committed", len(got), len(want))
	}
	if e, ok := x.Lookup(legacy); !ok || e.Digest != lu.Digest() {
		t.Errorf("legacy user: %+v %v", e, ok)
	}
	if _, err := h.Users.Get(ctx, "veeam."+legacy); err == nil {
		t.Errorf("the legacy key is still there")
	}
}
