package poller_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// Issue 16 point 1: a listing reaches the diff page by page. When Apple
// will not continue a listing (9629) and it starts again as a full sync,
// the pages of the first walk are void: a user changed in both walks gets
// one event, and a user gone by the second walk is retired.
func TestRestartedListingVoidsItsEarlierPages(t *testing.T) {
	e := setup(t, poller.Config{})
	e.run(t, "vpp") // seeds users 1–4, two batches of two
	// Three users change: the incremental listing takes two batches.
	for _, id := range []int64{1, 3, 4} {
		u, _ := e.vpp.Get(id)
		u.Email = "moved@test.com"
		e.vpp.Put(u)
	}
	var once sync.Once
	e.vpp.SetBeforeBatch(func(batch int) {
		if batch == 2 {
			// Between the walks: user 2, listed in the first walk's first
			// batch, leaves the directory.
			once.Do(func() { e.vpp.Remove(2) })
		}
	})
	e.vpp.InjectFault(vpptest.Fault{Batch: 2, ErrorNumber: 9629})
	res := e.run(t, "vpp")
	if res.Users != 3 {
		t.Errorf("the run counted %d users; want the second walk's 3", res.Users)
	}
	got := e.streamTypes(t)
	slices.Sort(got)
	want := []string{"user.retired/2", "user.updated/1", "user.updated/3", "user.updated/4"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A Veeam listing that moves under the pager (a user inserted before the
// offset reached) repeats a user on the next page and is swept again; the
// run reports the new user once and nothing else.
func TestShiftedVeeamListingReportsOnce(t *testing.T) {
	e := setup(t, poller.Config{})
	e.run(t, "veeam")
	users := e.veeam.Users()
	var once sync.Once
	e.veeam.SetBeforePage(func(page int) {
		if page == 2 {
			once.Do(func() {
				u := users[0]
				u.InstanceUID = "00000000-0000-4000-8000-000000000000" // sorts first
				u.UserName = "newcomer"
				e.veeam.Put(u)
			})
		}
	})
	e.run(t, "veeam")
	if got := e.streamTypes(t); !slices.Equal(got, []string{"user.registered/00000000-0000-4000-8000-000000000000"}) {
		t.Fatalf("events %v, want the newcomer's registration only", got)
	}
}
