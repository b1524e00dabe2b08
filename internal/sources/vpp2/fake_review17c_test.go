// Review 17c (issue 17, 425259d): the vpp2test fake served later pages
// from the listing computed at page 0 unless a SetBeforePage hook was set,
// and lookups from an index that did not see entries created after it was
// built; Apple's versionId "can change while traversing" and its lookups
// are live. Fixed: the fake drops its listing and index when the legacy
// directory's version (vpptest.Server.Version, constant time) moves.

package vpp2_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
)

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
