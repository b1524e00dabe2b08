package state

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// review19: records an earlier release stored with secrets in raw, spelt
// every way ScrubRaw reads a name (escaped, mixed case, separators,
// plural, nested in arrays), are all rewritten by LoadIndex now that
// MayHoldSecret screens them first; a clean record is left alone.
func TestReview19HoldsLoadIndexScrubsEverySpelling(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "veeam")
	raws := map[string]string{
		"escaped": `{"name":"a","\u0070assword":"S3CRET-escaped"}`,
		"folded":  `{"name":"b","P_A-S.S W.o.r.d":"S3CRET-folded"}`,
		"plural":  `{"name":"c","accessTokens":["S3CRET-plural"]}`,
		"nested":  `{"name":"d","x":[{"y":[{"Invitation-Link":"S3CRET-nested"}]}]}`,
		"apikey":  `{"name":"e","X-API-KEY":"S3CRET-apikey"}`,
		"clean":   `{"name":"f","tokenCount":3}`,
	}
	revs := map[string]uint64{}
	for id, raw := range raws {
		u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, Status: "enabled", Raw: json.RawMessage(raw)}
		rev, err := h.Users.Put(ctx, events.StateKey("veeam", id), mustRecord(t, u))
		if err != nil {
			t.Fatal(err)
		}
		revs[id] = rev
	}
	x, err := users.LoadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(raws) {
		t.Fatalf("index of %d users, want %d", x.Len(), len(raws))
	}
	for id := range raws {
		e, err := h.Users.Get(ctx, events.StateKey("veeam", id))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(e.Value()), "S3CRET") {
			t.Errorf("%s: the secret is still stored: %s", id, e.Value())
		}
		if id == "clean" && e.Revision() != revs[id] {
			t.Errorf("a record without a secret was rewritten")
		}
	}
}

// review19: a record an earlier release stored under the reversible key of
// a long id AND with a secret in raw. LoadIndex moves it to its hashed
// key; the second pass finds the secret but drops what it found
// (x, _, err = u.loadIndex), so the secret stays stored until the next
// start-up. (Not from a48f526; found beside it.)
func TestReview19BreaksLoadIndexLegacyKeyWithSecretKeepsSecret(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	users := NewUsers(h.Users, "veeam")
	legacy := strings.Repeat("q", events.MaxKeyLen+7)
	lu := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: legacy, Status: "disabled",
		Raw: json.RawMessage(`{"name":"q","credentials":{"userName":"q","password":"S3CRET-legacy"}}`)}
	if _, err := h.Users.Put(ctx, "veeam."+legacy, mustRecord(t, lu)); err != nil {
		t.Fatal(err)
	}
	if _, err := users.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := h.Users.Get(ctx, events.StateKey("veeam", legacy))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), "S3CRET") {
		t.Errorf("the moved record still stores the secret after LoadIndex: %.200s", e.Value())
	}
}
