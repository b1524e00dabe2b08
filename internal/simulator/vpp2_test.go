package simulator_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
)

func (e *adminEnv) vpp2Client(t *testing.T) *vpp2.Client {
	t.Helper()
	c, err := vpp2.New(vpp2.Config{Name: "vpp2", BaseURL: e.url + "/mdm/v2", SToken: simulator.DefaultVPPToken, Backoff: tiny,
		MaxRequestsPerSecond: 1000, MaxRestarts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The simulator serves one directory on both Apple APIs: every VPP user
// by userId on the legacy API and by clientUserIdStr on v2.
func TestVPP2ServesTheVPPDirectory(t *testing.T) {
	e := newAdminEnv(t, 5)
	legacy := snapshot(t, e.vppClient(t))
	v2 := byID(t, snapshot(t, e.vpp2Client(t)).Users)
	if len(v2) != len(legacy.Users) {
		t.Fatalf("%d users on v2, %d on the legacy API", len(v2), len(legacy.Users))
	}
	for _, u := range legacy.Users {
		w, ok := v2[u.ClientUserID]
		if !ok || w.Email != u.Email || w.Status != u.Status {
			t.Errorf("legacy user %s (clientUserIdStr %s, %s) is %+v on v2", u.ID, u.ClientUserID, u.Status, w)
		}
	}
}

// Faults reach the v2 fake through the admin API: a 200 with an error
// body is retried, a versionId that keeps moving fails the run.
func TestAdminVPP2Faults(t *testing.T) {
	e := newAdminEnv(t, 5)
	e.must(t, http.StatusAccepted, "POST", "/admin/faults", `{"api":"vpp2","errorNumber":9603,"okStatus":true,"times":2}`)
	if snap := snapshot(t, e.vpp2Client(t)); len(snap.Users) != 9 {
		t.Errorf("%d users after two 200-with-error answers, want 9", len(snap.Users))
	}
	e.sim.VPP2.SetPageSize(3)
	e.must(t, http.StatusAccepted, "POST", "/admin/faults", `{"api":"vpp2","page":2,"changeVersion":true,"times":10}`)
	_, err := e.vpp2Client(t).Snapshot(t.Context(), sources.Request{Full: true})
	if !errors.Is(err, vpp2.ErrPaging) {
		t.Errorf("error %v, want one wrapping vpp2.ErrPaging", err)
	}
	e.must(t, http.StatusBadRequest, "POST", "/admin/faults", `{"api":"vpp2","okStatus":true}`)
}
