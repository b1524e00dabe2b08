package veeam_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// Two ids with one hash (the first sweep tells ids apart by a 64-bit hash)
// count one user short, as a listing that moved does. Were every sweep to
// count by hash, every sweep would come up short and the source would be
// blocked for good (a review of issue 16); the later sweeps count exact
// ids, so the listing completes with every user.
func TestCollidingIDsDoNotBlockTheSource(t *testing.T) {
	restore := veeam.SetIDHash(func(string) uint64 { return 42 }) // every id collides
	defer restore()
	users := veeamtest.FixtureUsers()
	srv := veeamtest.NewServer(testToken, users...)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: ts.URL, Token: testToken, Backoff: tinyBackoff, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var all sources.Collector
	snap, err := c.Stream(context.Background(), sources.Request{Full: true}, &all)
	if err != nil {
		t.Fatalf("the listing did not complete: %v", err)
	}
	var got []string
	for _, u := range all.Users {
		got = append(got, u.ID)
	}
	slices.Sort(got)
	var want []string
	for _, u := range users {
		want = append(want, u.InstanceUID)
	}
	slices.Sort(want)
	if !snap.Complete || !slices.Equal(got, want) {
		t.Fatalf("complete %v, users %v; want %v", snap.Complete, got, want)
	}
}
