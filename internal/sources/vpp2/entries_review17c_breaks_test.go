//go:build openbreaks

// Review 17c (issue 17, 1d66afa, 425259d): open breaks, left failing
// behind the openbreaks tag.
//
//   - TestReview17cSecondRecreationIncremental: a retired user re-created
//     and seen by an incremental run is recorded with its entries "not
//     known" (the old retired entries, unmodified, are not in the
//     listing, and a retired user keeps no entries), so a retirement and
//     re-creation before the next full listing is reported as nothing
//     (here: no event at all). The full mode holds (review17c_test.go).
//   - TestReview17cRecreatedOnTheSameAppleAccount: Apple's "Deleted"
//     state is exactly a key retired and re-created with the same Apple
//     Account: the new entry has the old one's e-mail and idHash and no
//     invite code, so its fingerprint equals the recorded one, and "more
//     retired entries beside the same active entry" is recorded silently.
//     The retirement, the re-registration and the association are lost.
//     Telling it needs more than a count (a count of Deleted entries, or
//     counting a rise alone as the pair, which the design refuses).
//   - TestReview17cPurgedThenRecreatedIncremental: a retired entry Apple
//     purges (Apple does not say it never does) is not seen by incremental
//     runs, so the recorded count stays one too high; the next retirement
//     and re-creation brings the count back to it, no rise, and the diff
//     reports user.updated status associated → registered, a change that
//     did not happen, instead of the pair. The full mode holds.
//   - TestReview17cFakeVersionMovesMidWalk, TestReview17cFakeLookupSeesNewEntry:
//     since 425259d the vpp2test fake serves later pages from the listing
//     computed at page 0 unless a SetBeforePage hook is set, and lookups
//     from an index that does not see entries created after it was built.
//     Apple's versionId "can change while traversing", and its lookups are
//     live. The simulation changes the VPP directory at random moments
//     without a hook (it hooks only Veeam), so its vpp2 walks no longer see
//     a versionId move mid-walk (the restart is not exercised there), and
//     an absence confirmation by lookup may call absent a user re-created
//     after the index was built. A cheap fix needs an O(1) version of the
//     legacy directory (vpptest.Server, outside the reviewer's paths): the
//     cached listing and the index are then dropped when it moves; a
//     version read by Since is a copy of the whole directory per page,
//     which undoes 425259d's gain.

package vpp2_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
)

func TestReview17cSecondRecreationIncremental(t *testing.T) {
	review17cSecondRecreation(t, time.Hour)
}

func TestReview17cPurgedThenRecreatedIncremental(t *testing.T) {
	review17cPurgedThenRecreated(t, time.Hour)
}

// Apple's "Deleted": retired, and the Apple Account associated again with
// a new entry of the same clientUserId. The new entry has the old one's
// e-mail and idHash (the hash of the same store account) and no invite
// code.
func TestReview17cRecreatedOnTheSameAppleAccount(t *testing.T) {
	review17cModes(t, func(t *testing.T, fullEvery time.Duration) {
		r := newRig(t, fullEvery, 1, vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered))
		r.run(t)
		old := vu(1, "alice", vpptest.StatusDeleted)
		old.ItsIDHash = "hash1="
		r.dir.Put(old)
		again := vu(9, "alice", vpptest.StatusAssociated)
		again.ItsIDHash = "hash1="
		r.dir.Put(again)
		r.run(t)
		review17cWant(t, r, []string{"user.retired alice retired associated",
			"user.registered alice registered retired", "user.associated alice associated registered"})
	})
}

// The fake as Apple: a directory changed during a walk (here without a
// SetBeforePage hook: by another goroutine, the simulation's random
// changes, the simulator's admin API) moves the versionId of the next page
// ("versionId and totalPages can change while traversing"), so that the
// walk's restart is exercised; and the page served is the directory as it
// is.
func TestReview17cFakeVersionMovesMidWalk(t *testing.T) {
	fake := vpp2test.NewServer(testSToken, vpptest.NewServer(testSToken,
		vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered), vu(3, "carol", vpptest.StatusRegistered)))
	fake.SetPageSize(1)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	v0, _ := review17cGet(t, srv, "")
	fake.Directory().Remove(1)
	v1, keys := review17cGet(t, srv, "pageIndex=1")
	if v1 == v0 {
		t.Errorf("page 1 after a change has page 0's versionId %s", v0)
	}
	if !slices.Equal(keys, []string{"carol/Registered"}) {
		t.Errorf("page 1 after alice's removal lists %q, want carol (the directory as it is)", keys)
	}
}

// The fake as Apple: a lookup by clientUserId lists the entries the key
// has now, one created since the last lookup included. Kept stale, the
// absence confirmation of a user re-created just after a listing would
// confirm an absence that is not one.
func TestReview17cFakeLookupSeesNewEntry(t *testing.T) {
	fake := vpp2test.NewServer(testSToken, vpptest.NewServer(testSToken,
		vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered)))
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	review17cGet(t, srv, "")
	fake.Directory().Remove(2)
	if _, keys := review17cGet(t, srv, "clientUserId=bob"); len(keys) != 0 {
		t.Fatalf("bob removed: lookup lists %q", keys)
	}
	fake.Directory().Put(vu(7, "bob", vpptest.StatusRegistered))
	if _, keys := review17cGet(t, srv, "clientUserId=bob"); !slices.Equal(keys, []string{"bob/Registered"}) {
		t.Errorf("bob re-created: lookup lists %q, want his new entry", keys)
	}
	fake.Directory().Put(vu(8, "dave", vpptest.StatusRegistered))
	if _, keys := review17cGet(t, srv, "clientUserId=dave"); !slices.Equal(keys, []string{"dave/Registered"}) {
		t.Errorf("dave created: lookup lists %q, want his entry", keys)
	}
}

// review17cGet answers one GET of the fake's users endpoint.
func review17cGet(t *testing.T, srv *httptest.Server, query string) (version string, keys []string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/mdm/v2/users?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testSToken)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		VersionID string `json:"versionId"`
		Users     []struct {
			ClientUserID string `json:"clientUserId"`
			Status       string `json:"status"`
		} `json:"users"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	for _, u := range body.Users {
		keys = append(keys, u.ClientUserID+"/"+u.Status)
	}
	return body.VersionID, keys
}
