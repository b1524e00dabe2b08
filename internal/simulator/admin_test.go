package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/pkg/events"
)

var tiny = httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}

type adminEnv struct {
	sim *simulator.Simulator
	url string
}

func newAdminEnv(t *testing.T, users int) *adminEnv {
	t.Helper()
	sim := simulator.New(simulator.Config{Users: users, Seed: 3})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return &adminEnv{sim: sim, url: srv.URL}
}

// call sends method path with body (a string, or a value to encode) and
// returns the status and the decoded JSON answer.
func (e *adminEnv) call(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: content type %q, want JSON", method, path, ct)
	}
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %v", method, path, err)
	}
	return res.StatusCode, out
}

// must calls and fails unless the answer has status want.
func (e *adminEnv) must(t *testing.T, want int, method, path string, body any) map[string]any {
	t.Helper()
	status, out := e.call(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s: status %d (%v), want %d", method, path, status, out, want)
	}
	return out
}

func (e *adminEnv) state(t *testing.T) simulator.AdminState {
	t.Helper()
	res, err := http.Get(e.url + "/admin/state")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("state: status %d", res.StatusCode)
	}
	var st simulator.AdminState
	dec := json.NewDecoder(res.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *adminEnv) vppClient(t *testing.T) *vpp.Client {
	t.Helper()
	c, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: e.url + "/mdm", SToken: simulator.DefaultVPPToken, Backoff: tiny})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *adminEnv) veeamClient(t *testing.T, mod func(*veeam.Config)) *veeam.Client {
	t.Helper()
	cfg := veeam.Config{Name: "veeam", BaseURL: e.url, Token: simulator.DefaultVeeamToken, Backoff: tiny}
	if mod != nil {
		mod(&cfg)
	}
	c, err := veeam.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type snapshotter interface {
	Snapshot(context.Context, sources.Request) (sources.Snapshot, error)
}

func snapshot(t *testing.T, c snapshotter) sources.Snapshot {
	t.Helper()
	snap, err := c.Snapshot(context.Background(), sources.Request{Full: true})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return snap
}

// byID indexes users and fails on a duplicate.
func byID(t *testing.T, users []events.User) map[string]events.User {
	t.Helper()
	m := make(map[string]events.User, len(users))
	for _, u := range users {
		if _, dup := m[u.ID]; dup {
			t.Errorf("user %s listed twice", u.ID)
		}
		m[u.ID] = u
	}
	return m
}

func TestAdminVPP9646RetriedByRealClient(t *testing.T) {
	e := newAdminEnv(t, 5)
	out := e.must(t, http.StatusAccepted, "POST", "/admin/faults", `{"api":"vpp","errorNumber":9646,"times":2}`)
	if q, _ := out["queued"].(map[string]any); q["errorNumber"] != float64(9646) || q["times"] != float64(2) {
		t.Errorf("echoed fault %v", out)
	}
	snap := snapshot(t, e.vppClient(t))
	if len(snap.Users) != 4+5 || !snap.Complete {
		t.Errorf("%d users (complete %v), want 9", len(snap.Users), snap.Complete)
	}
	if got := e.state(t).VPP.Requests; got != 3 {
		t.Errorf("%d VPP requests, want 3 (two refused with 9646, then the batch)", got)
	}
}

func TestAdminVeeam429RetryAfterHonoured(t *testing.T) {
	e := newAdminEnv(t, 2)
	e.must(t, http.StatusAccepted, "POST", "/admin/faults", map[string]any{"api": "veeam", "status": 429, "retryAfter": 1})
	start := time.Now()
	snap := snapshot(t, e.veeamClient(t, nil))
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("retried after %v, the server asked for 1s", elapsed)
	}
	if len(snap.Users) != 3+2 {
		t.Errorf("%d users, want 5", len(snap.Users))
	}
	if got := e.state(t).Veeam.Requests; got != 2 {
		t.Errorf("%d Veeam requests, want 2", got)
	}
}

func TestAdminVeeamPagingDrift(t *testing.T) {
	e := newAdminEnv(t, 10) // 13 users: pages of 4 at offsets 0, 4, 8, 12
	const early = "00000000-0000-4000-8000-00000000beef"
	e.must(t, http.StatusAccepted, "POST", "/admin/faults", map[string]any{
		"api": "veeam", "page": 2,
		"insertBefore": map[string]any{"instanceUid": early, "userName": "late-arrival", "role": "CompanyOwner", "status": "Enabled"},
	})
	snap := snapshot(t, e.veeamClient(t, func(c *veeam.Config) { c.PageSize = 4 }))
	got := byID(t, snap.Users)
	want := e.sim.Veeam.Users()
	if len(want) != 14 || len(got) != len(want) {
		t.Fatalf("%d users listed, server holds %d, want 14", len(got), len(want))
	}
	for _, u := range want {
		if _, ok := got[u.InstanceUID]; !ok {
			t.Errorf("user %s missing", u.InstanceUID)
		}
	}
	if got[early].UserName != "late-arrival" {
		t.Errorf("inserted user = %+v", got[early])
	}
	// First sweep: 4 pages over a listing that moved; second: 4 pages of 14.
	if snap.Pages != 8 {
		t.Errorf("%d pages, want 8: the client must sweep again after the drift", snap.Pages)
	}
}

func TestAdminCaseFlipKeepsFingerprints(t *testing.T) {
	e := newAdminEnv(t, 6)
	c := e.veeamClient(t, nil)
	before := byID(t, snapshot(t, c).Users)
	out := e.must(t, http.StatusOK, "POST", "/admin/case-flip", nil)
	if out["flipped"] != float64(3+6) {
		t.Errorf("flipped %v, want 9", out["flipped"])
	}
	after := byID(t, snapshot(t, c).Users)
	if len(after) != len(before) {
		t.Fatalf("%d users after, %d before", len(after), len(before))
	}
	flippedRole := 0
	for id, b := range before {
		a := after[id]
		if a.Fingerprint() != b.Fingerprint() {
			t.Errorf("%s: fingerprint changed (role %q → %q, status %q → %q)", id, b.Role, a.Role, b.Status, a.Status)
		}
		if a.Role != b.Role && strings.EqualFold(a.Role, b.Role) {
			flippedRole++
		}
		if bytes.Equal(a.Raw, b.Raw) {
			t.Errorf("%s: raw record unchanged; the flip did not reach the API", id)
		}
	}
	if flippedRole != len(before) {
		t.Errorf("%d of %d roles changed case", flippedRole, len(before))
	}
	// The fixture's lower-camel values became upper camel.
	if u, ok := e.sim.Veeam.Get("1ee4a452-7fda-49b7-9074-92db1dc87fa9"); !ok || u.Role != "CompanyOwner" || u.Status != "Enabled" {
		t.Errorf("fixture user after the flip: %+v", u)
	}
	// Flipping twice restores the original spelling.
	e.must(t, http.StatusOK, "POST", "/admin/case-flip", nil)
	for id, u := range byID(t, snapshot(t, c).Users) {
		if u.Role != before[id].Role || !bytes.Equal(u.Raw, before[id].Raw) {
			t.Errorf("%s: role %q after two flips, want %q", id, u.Role, before[id].Role)
		}
	}
}

func TestAdminExpireTokens(t *testing.T) {
	e := newAdminEnv(t, 1)
	e.sim.Veeam.SetPassword("poller", "pw-simulated")
	c := e.veeamClient(t, func(c *veeam.Config) { c.Token, c.Username, c.Password = "", "poller", "pw-simulated" })
	snapshot(t, c)
	out := e.must(t, http.StatusOK, "POST", "/admin/expire-tokens", nil)
	if out["expired"] != true {
		t.Errorf("answer %v", out)
	}
	snapshot(t, c)
	st := e.state(t)
	if st.Veeam.TokenRequests["password"] != 1 || st.Veeam.TokenRequests["refresh_token"] != 1 {
		t.Errorf("token requests %v, want one login and one refresh", st.Veeam.TokenRequests)
	}
	// 1 page, then a 401 and the same page again.
	if st.Veeam.Requests != 3 {
		t.Errorf("%d Veeam requests, want 3", st.Veeam.Requests)
	}
}

func TestAdminUsersVPP(t *testing.T) {
	e := newAdminEnv(t, 0)
	c := e.vppClient(t)
	out := e.must(t, http.StatusCreated, "POST", "/admin/users/vpp", `{"userId":5001,"email":"new@school.example","clientUserIdStr":"c-5001"}`)
	if out["status"] != "Registered" || out["email"] != "new@school.example" {
		t.Errorf("created %v", out)
	}
	if st := e.state(t); st.VPP.Users != 5 {
		t.Errorf("%d VPP users, want 5", st.VPP.Users)
	}
	if u := byID(t, snapshot(t, c).Users)["5001"]; u.Email != "new@school.example" || u.Status != events.StatusRegistered || u.ClientUserID != "c-5001" {
		t.Errorf("client sees %+v", u)
	}
	// An update keeps the fields it leaves out.
	out = e.must(t, http.StatusOK, "POST", "/admin/users/vpp", `{"userId":5001,"status":"Associated","itsIdHash":"h="}`)
	if out["status"] != "Associated" || out["email"] != "new@school.example" {
		t.Errorf("updated %v", out)
	}
	if u := byID(t, snapshot(t, c).Users)["5001"]; u.Status != events.StatusAssociated || u.Email != "new@school.example" {
		t.Errorf("client sees %+v", u)
	}
	e.must(t, http.StatusOK, "DELETE", "/admin/users/vpp/5001", nil)
	if _, ok := byID(t, snapshot(t, c).Users)["5001"]; ok {
		t.Error("removed user still listed")
	}
	e.must(t, http.StatusNotFound, "DELETE", "/admin/users/vpp/5001", nil)
	if st := e.state(t); st.VPP.Users != 4 {
		t.Errorf("%d VPP users, want 4", st.VPP.Users)
	}
}

func TestAdminUsersVeeam(t *testing.T) {
	e := newAdminEnv(t, 0)
	c := e.veeamClient(t, nil)
	const id = "aaaaaaaa-0000-4000-8000-000000000001"
	out := e.must(t, http.StatusCreated, "POST", "/admin/users/veeam",
		map[string]any{"instanceUid": id, "userName": "ops", "organizationUid": "org-9", "profile": map[string]any{"email": "ops@msp.example", "firstName": "Ops"}})
	if out["role"] != "CompanyLocationUser" || out["status"] != "Enabled" {
		t.Errorf("created %v", out)
	}
	u := byID(t, snapshot(t, c).Users)[id]
	if u.UserName != "ops" || u.Email != "ops@msp.example" || u.FirstName != "Ops" || u.OrganizationID != "org-9" || u.Status != "enabled" {
		t.Errorf("client sees %+v", u)
	}
	out = e.must(t, http.StatusOK, "POST", "/admin/users/veeam", map[string]any{"instanceUid": id, "role": "CompanyAdministrator", "profile": map[string]any{"lastName": "Erator"}})
	if out["userName"] != "ops" || out["role"] != "CompanyAdministrator" {
		t.Errorf("updated %v", out)
	}
	u = byID(t, snapshot(t, c).Users)[id]
	if u.Role != "CompanyAdministrator" || u.FirstName != "Ops" || u.LastName != "Erator" || u.Email != "ops@msp.example" {
		t.Errorf("client sees %+v", u)
	}
	if st := e.state(t); st.Veeam.Users != 4 {
		t.Errorf("%d Veeam users, want 4", st.Veeam.Users)
	}
	e.must(t, http.StatusOK, "DELETE", "/admin/users/veeam/"+id, nil)
	if _, ok := byID(t, snapshot(t, c).Users)[id]; ok {
		t.Error("removed user still listed")
	}
	e.must(t, http.StatusNotFound, "DELETE", "/admin/users/veeam/"+id, nil)
	// An id with characters that need escaping in a path.
	odd := "odd id/with slash"
	e.must(t, http.StatusCreated, "POST", "/admin/users/veeam", map[string]any{"instanceUid": odd})
	e.must(t, http.StatusOK, "DELETE", "/admin/users/veeam/"+url.PathEscape(odd), nil)
	if _, ok := e.sim.Veeam.Get(odd); ok {
		t.Error("user with an escaped id not removed")
	}
}

func TestAdminState(t *testing.T) {
	e := newAdminEnv(t, 2)
	st := e.state(t)
	if st.VPP.Users != 6 || st.Veeam.Users != 5 || st.VPP.Requests != 0 || st.Veeam.Requests != 0 {
		t.Fatalf("initial state %+v", st)
	}
	snapshot(t, e.vppClient(t))
	snapshot(t, e.veeamClient(t, nil))
	st = e.state(t)
	if st.VPP.Requests != 1 || st.Veeam.Requests != 1 {
		t.Errorf("requests vpp %d veeam %d, want 1 and 1", st.VPP.Requests, st.Veeam.Requests)
	}
	if st.Veeam.TokenRequests == nil {
		t.Error("tokenRequests missing")
	}
}

// TestAdminFaultMapping checks that each JSON field reaches the fake's
// fault, by looking at the raw answers of the APIs.
func TestAdminFaultMapping(t *testing.T) {
	vppReq := func(e *adminEnv) (*http.Response, []byte) {
		body := fmt.Sprintf(`{"sToken":%q,"includeRetired":1}`, simulator.DefaultVPPToken)
		res, err := http.Post(e.url+"/mdm/getVPPUsersSrv", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	veeamReq := func(e *adminEnv, offset int) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v3/users?limit=2&offset=%d", e.url, offset), nil)
		req.Header.Set("Authorization", "Bearer "+simulator.DefaultVeeamToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	type check func(t *testing.T, e *adminEnv)
	tests := []struct {
		name  string
		fault string
		check check
	}{
		{name: "vpp error number and message", fault: `{"api":"vpp","errorNumber":9603,"errorMessage":"custom trouble"}`, check: func(t *testing.T, e *adminEnv) {
			res, b := vppReq(e)
			if res.StatusCode != 200 || !strings.Contains(string(b), `"errorNumber":9603`) || !strings.Contains(string(b), "custom trouble") {
				t.Errorf("status %d body %s", res.StatusCode, b)
			}
		}},
		{name: "vpp http status with retryAfter", fault: `{"api":"vpp","httpStatus":503,"retryAfter":7}`, check: func(t *testing.T, e *adminEnv) {
			res, _ := vppReq(e)
			if res.StatusCode != 503 || res.Header.Get("Retry-After") != "7" {
				t.Errorf("status %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
			}
		}},
		{name: "vpp retryAfter as an HTTP date", fault: `{"api":"vpp","httpStatus":302,"retryAfter":"Wed, 21 Oct 2037 07:28:00 GMT"}`, check: func(t *testing.T, e *adminEnv) {
			res, _ := vppReq(e)
			if res.StatusCode != 302 || res.Header.Get("Retry-After") != "Wed, 21 Oct 2037 07:28:00 GMT" {
				t.Errorf("status %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
			}
		}},
		{name: "vpp noTokens", fault: `{"api":"vpp","noTokens":true}`, check: func(t *testing.T, e *adminEnv) {
			_, b := vppReq(e)
			if strings.Contains(string(b), "Token") || !strings.Contains(string(b), `"users"`) {
				t.Errorf("body %s", b)
			}
		}},
		{name: "vpp truncate", fault: `{"api":"vpp","truncate":true}`, check: func(t *testing.T, e *adminEnv) {
			if _, b := vppReq(e); json.Valid(b) {
				t.Errorf("body is whole: %s", b)
			}
		}},
		{name: "vpp delay", fault: `{"api":"vpp","delayMs":150}`, check: func(t *testing.T, e *adminEnv) {
			start := time.Now()
			vppReq(e)
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Errorf("answered after %v", d)
			}
		}},
		{name: "vpp batch and times", fault: `{"api":"vpp","batch":2,"errorNumber":9603,"times":2}`, check: func(t *testing.T, e *adminEnv) {
			// Batch 1 is not affected.
			if _, b := vppReq(e); !strings.Contains(string(b), `"status":0`) {
				t.Errorf("batch 1: %s", b)
			}
		}},
		{name: "veeam status, message, retry after", fault: `{"api":"veeam","status":520,"message":"boom","retryAfter":3,"retryAfterHeader":4}`, check: func(t *testing.T, e *adminEnv) {
			res, b := veeamReq(e, 0)
			if res.StatusCode != 520 || res.Header.Get("Retry-After") != "4" || !strings.Contains(string(b), `"boom"`) || !strings.Contains(string(b), `"retryAfter":3`) {
				t.Errorf("status %d Retry-After %q body %s", res.StatusCode, res.Header.Get("Retry-After"), b)
			}
		}},
		{name: "veeam times", fault: `{"api":"veeam","status":520,"times":2}`, check: func(t *testing.T, e *adminEnv) {
			for i, want := range []int{520, 520, 200} {
				if res, _ := veeamReq(e, 0); res.StatusCode != want {
					t.Errorf("request %d: status %d, want %d", i+1, res.StatusCode, want)
				}
			}
		}},
		{name: "veeam page", fault: `{"api":"veeam","page":2,"status":520}`, check: func(t *testing.T, e *adminEnv) {
			if res, _ := veeamReq(e, 0); res.StatusCode != 200 {
				t.Errorf("page 1: status %d", res.StatusCode)
			}
			if res, _ := veeamReq(e, 2); res.StatusCode != 520 {
				t.Errorf("page 2: status %d", res.StatusCode)
			}
		}},
		{name: "veeam wrong offset", fault: `{"api":"veeam","wrongOffset":true}`, check: func(t *testing.T, e *adminEnv) {
			if _, b := veeamReq(e, 0); !strings.Contains(string(b), `"offset":1`) {
				t.Errorf("body %s", b)
			}
		}},
		{name: "veeam truncate", fault: `{"api":"veeam","truncate":true}`, check: func(t *testing.T, e *adminEnv) {
			if _, b := veeamReq(e, 0); json.Valid(b) {
				t.Errorf("body is whole: %s", b)
			}
		}},
		{name: "veeam delay", fault: `{"api":"veeam","delayMs":150}`, check: func(t *testing.T, e *adminEnv) {
			start := time.Now()
			veeamReq(e, 0)
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Errorf("answered after %v", d)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newAdminEnv(t, 3)
			e.must(t, http.StatusAccepted, "POST", "/admin/faults", tc.fault)
			tc.check(t, e)
		})
	}
}

// A truncated Veeam page injected over HTTP is a decode error for the real
// client, naming the page, and is not retried.
func TestAdminVeeamTruncateFailsTheRun(t *testing.T) {
	e := newAdminEnv(t, 3)
	e.must(t, http.StatusAccepted, "POST", "/admin/faults", `{"api":"veeam","truncate":true}`)
	_, err := e.veeamClient(t, nil).Snapshot(context.Background(), sources.Request{})
	var de *sources.DecodeError
	if !errors.As(err, &de) || de.Page != 1 {
		t.Fatalf("error %v, want a page 1 decode error", err)
	}
	if n := e.state(t).Veeam.Requests; n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestAdminBadInput(t *testing.T) {
	big := `{"api":"vpp","errorMessage":"` + strings.Repeat("x", 1<<20) + `"}`
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantErr                  string
	}{
		{"empty body", "POST", "/admin/faults", "", 400, "empty"},
		{"malformed json", "POST", "/admin/faults", `{"api":`, 400, "malformed JSON"},
		{"not an object", "POST", "/admin/faults", `[1]`, 400, "want an object"},
		{"trailing data", "POST", "/admin/faults", `{"api":"vpp","errorNumber":9603} {}`, 400, "after the JSON object"},
		{"missing api", "POST", "/admin/faults", `{"errorNumber":9603}`, 400, "field api is required"},
		{"api not a string", "POST", "/admin/faults", `{"api":1}`, 400, "field api must be a string"},
		{"unknown api", "POST", "/admin/faults", `{"api":"ldap"}`, 400, `unknown API "ldap"`},
		{"field of the other api", "POST", "/admin/faults", `{"api":"vpp","page":2,"errorNumber":9603}`, 400, `unknown field "page"`},
		{"typo", "POST", "/admin/faults", `{"api":"veeam","staus":429}`, 400, `unknown field "staus"`},
		{"wrong type", "POST", "/admin/faults", `{"api":"vpp","batch":"two","errorNumber":9603}`, 400, "field batch: got JSON string, want a number"},
		{"negative times", "POST", "/admin/faults", `{"api":"vpp","times":-1,"errorNumber":9603}`, 400, "times"},
		{"negative batch", "POST", "/admin/faults", `{"api":"vpp","batch":-1,"errorNumber":9603}`, 400, "batch"},
		{"delay too long", "POST", "/admin/faults", `{"api":"veeam","delayMs":86400000}`, 400, "delayMs"},
		{"vpp does nothing", "POST", "/admin/faults", `{"api":"vpp","batch":2}`, 400, "does nothing"},
		{"vpp status 200", "POST", "/admin/faults", `{"api":"vpp","httpStatus":200}`, 400, "httpStatus"},
		{"vpp status and number", "POST", "/admin/faults", `{"api":"vpp","httpStatus":503,"errorNumber":9646}`, 400, "not both"},
		{"vpp retryAfter without status", "POST", "/admin/faults", `{"api":"vpp","errorNumber":9646,"retryAfter":5}`, 400, "retryAfter needs httpStatus"},
		{"vpp bad retryAfter", "POST", "/admin/faults", `{"api":"vpp","httpStatus":503,"retryAfter":"soon"}`, 400, "seconds or an HTTP date"},
		{"vpp message without number", "POST", "/admin/faults", `{"api":"vpp","truncate":true,"errorMessage":"x"}`, 400, "errorMessage needs errorNumber"},
		{"veeam does nothing", "POST", "/admin/faults", `{"api":"veeam","times":3}`, 400, "does nothing"},
		{"veeam status 302", "POST", "/admin/faults", `{"api":"veeam","status":302}`, 400, "status must be between 400 and 599"},
		{"veeam truncate with status", "POST", "/admin/faults", `{"api":"veeam","status":520,"truncate":true}`, 400, "truncate"},
		{"veeam retryAfter without status", "POST", "/admin/faults", `{"api":"veeam","retryAfter":2,"truncate":true}`, 400, "need status"},
		{"veeam insertBefore without id", "POST", "/admin/faults", `{"api":"veeam","insertBefore":{"userName":"x"}}`, 400, "insertBefore.instanceUid is required"},
		{"body too large", "POST", "/admin/faults", big, 400, "larger than"},
		{"vpp user without id", "POST", "/admin/users/vpp", `{"email":"x@y"}`, 400, "userId is required"},
		{"vpp user id a string", "POST", "/admin/users/vpp", `{"userId":"5"}`, 400, "field userId"},
		{"vpp user empty status", "POST", "/admin/users/vpp", `{"userId":5,"status":""}`, 400, "status must not be empty"},
		{"veeam user without id", "POST", "/admin/users/veeam", `{"userName":"x"}`, 400, "instanceUid is required"},
		{"veeam user unknown field", "POST", "/admin/users/veeam", `{"instanceUid":"x","email":"x@y"}`, 400, `unknown field "email"`},
		{"user of unknown api", "POST", "/admin/users/ldap", `{}`, 404, `unknown API "ldap"`},
		{"delete vpp bad id", "DELETE", "/admin/users/vpp/abc", "", 400, "not a positive userId"},
		{"delete unknown api", "DELETE", "/admin/users/ldap/1", "", 404, `unknown API "ldap"`},
		{"unknown endpoint", "POST", "/admin/nothing", "", 404, "no admin endpoint"},
		{"wrong method faults", "GET", "/admin/faults", "", 405, "takes POST"},
		{"wrong method state", "POST", "/admin/state", "", 405, "takes GET"},
		{"wrong method delete", "DELETE", "/admin/users/vpp", "", 405, "takes POST"},
	}
	e := newAdminEnv(t, 1)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := e.call(t, tc.method, tc.path, tc.body)
			msg, _ := out["error"].(string)
			if status != tc.wantStatus || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("status %d error %q, want %d and %q", status, msg, tc.wantStatus, tc.wantErr)
			}
			if strings.Contains(msg, "Go struct") || strings.Contains(msg, "simulator.") {
				t.Errorf("error %q leaks Go type names", msg)
			}
		})
	}
	// Nothing was injected or changed by the refused requests.
	snapshot(t, e.vppClient(t))
	snapshot(t, e.veeamClient(t, nil))
	if st := e.state(t); st.VPP.Users != 5 || st.Veeam.Users != 4 || st.VPP.Requests != 1 || st.Veeam.Requests != 1 {
		t.Errorf("state after refused requests %+v", st)
	}
}

// An empty batch in the middle of a VPP listing is not its end: the real
// client must read past it and still see every user.
func TestEmptyMiddleBatchOverHTTP(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 10})
	sim.VPP.SetBatchSize(3)
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	res, err := http.Post(srv.URL+"/admin/faults", "application/json", strings.NewReader(`{"api":"vpp","emptyBatch":2}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("inject: %d", res.StatusCode)
	}
	c, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: srv.URL + "/mdm", SToken: simulator.DefaultVPPToken})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Snapshot(context.Background(), sources.Request{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Users) != 14 || snap.Pages != 6 {
		t.Fatalf("got %d users in %d batches, want all 14 in 6 (5 + the empty one)", len(snap.Users), snap.Pages)
	}
}
