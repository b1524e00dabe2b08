package simulator_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/vpp"
)

func TestSeededFromFixtures(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 5})
	if n := len(sim.VPP.Users()); n != 4+5 {
		t.Fatalf("vpp users = %d, want 9", n)
	}
	if n := len(sim.Veeam.Users()); n != 3+5 {
		t.Fatalf("veeam users = %d, want 8", n)
	}
	if u, ok := sim.VPP.Get(1); !ok || u.Email != "user1@test.com" {
		t.Fatalf("fixture user 1 = %+v", u)
	}
}

// The real clients read the simulator's directory, and churn changes it.
func TestRealClientsSeeChurn(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 10, Seed: 7})
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	vc, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: srv.URL + "/mdm", SToken: simulator.DefaultVPPToken})
	if err != nil {
		t.Fatal(err)
	}
	wc, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: srv.URL, Token: simulator.DefaultVeeamToken})
	if err != nil {
		t.Fatal(err)
	}
	fingerprints := func() map[string]string {
		m := map[string]string{}
		for _, c := range []interface {
			Snapshot(context.Context, sources.Request) (sources.Snapshot, error)
		}{vc, wc} {
			snap, err := c.Snapshot(context.Background(), sources.Request{Full: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range snap.Users {
				m[u.Source+"/"+u.ID] = u.Fingerprint()
			}
		}
		return m
	}
	before := fingerprints()
	var changes []string
	for range 10 {
		changes = append(changes, sim.Churn()...)
	}
	after := fingerprints()
	differ := 0
	for k, v := range after {
		if before[k] != v {
			differ++
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			differ++
		}
	}
	if differ == 0 || len(changes) != 20 {
		t.Fatalf("20 churn steps (%v) changed %d users", changes, differ)
	}
	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "rollcall simulator") {
		t.Fatalf("index page: %q", b)
	}
}
