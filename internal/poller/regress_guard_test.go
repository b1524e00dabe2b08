package poller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestExpiredHoldSurvivesAFailedSecondListing (found by the review of issue 12; the comment says what broke before the fix): a mass removal is held; once
// it has persisted for REMOVAL_HOLD its absences go to confirmation (a
// second listing, since more users are missing than the guard minimum). If
// that one second listing fails, the run keeps the users (fine) but also
// forgets the hold (next.Held = nil), so the next run starts a brand-new
// REMOVAL_HOLD for the very same removals, which have by then persisted in
// every complete snapshot for longer than REMOVAL_HOLD (SPEC §1.3). One
// transient failure per day delays the removals for ever.
func TestExpiredHoldSurvivesAFailedSecondListing(t *testing.T) {
	js, h := rawEnv(t)
	clk := &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	all := span(1, 40)
	c := &confirmSrc{fakeSrc: fakeSrc{name: "v", kind: events.KindVeeam}, listings: [][]events.User{veeamUsers(all...)}}
	p := poller.New(js, h, poller.Config{Now: clk.Now, Guard: poller.Guard{MinRemovals: 10, MaxRatio: 0.2, Hold: time.Hour}},
		poller.SourceConfig{Source: withoutLookup{c}, Interval: time.Hour})
	ctx := context.Background()
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.listings = [][]events.User{veeamUsers(span(16, 40)...)} // u1..u15 deleted
	c.listed = 0
	c.listFailAt = 3 // the second listing of the run after the hold expired
	c.mu.Unlock()
	if res, err := p.RunOnce(ctx, "v"); err != nil || res.Held != 15 {
		t.Fatalf("first sight: %+v %v", res, err)
	}
	clk.Add(2 * time.Hour)
	res, err := p.RunOnce(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hold expired, second listing failed: held %d unconfirmed %d events %d", res.Held, res.Unconfirmed, res.Events)
	clk.Add(5 * time.Minute)
	res, err = p.RunOnce(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	retired := 0
	for _, l := range trail(t, js) {
		if strings.HasPrefix(l, events.TypeRetired+" ") {
			retired++
		}
	}
	if res.Held != 0 || retired != 15 {
		t.Fatalf("2h05m after the same 15 users went missing (REMOVAL_HOLD 1h), the next run holds %d again and %d are retired; want 0 held, 15 retired", res.Held, retired)
	}
}
