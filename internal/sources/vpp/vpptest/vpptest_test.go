package vpptest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

const token = "test-stoken"

type answer struct {
	Status             int               `json:"status"`
	ErrorNumber        int               `json:"errorNumber"`
	BatchToken         string            `json:"batchToken"`
	SinceModifiedToken string            `json:"sinceModifiedToken"`
	BatchCount         any               `json:"batchCount"`
	TotalBatchCount    any               `json:"totalBatchCount"`
	TotalCount         any               `json:"totalCount"`
	Users              []json.RawMessage `json:"users"`
}

func post(t *testing.T, h http.Handler, path, body string) (answer, []byte, *http.Response) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	res := rec.Result()
	raw, _ := io.ReadAll(res.Body)
	var a answer
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer %q: %v", raw, err)
		}
	}
	return a, raw, res
}

func TestFixtureUsersMatchFixture(t *testing.T) {
	fixture, err := os.ReadFile("../testdata/vpp-getVPPUsersSrv-response.json")
	if err != nil {
		t.Fatal(err)
	}
	var want answer
	if err := json.Unmarshal(fixture, &want); err != nil {
		t.Fatal(err)
	}
	s := vpptest.NewServer(token, vpptest.FixtureUsers()...)
	got, raw, _ := post(t, s, "/mdm/getVPPUsersSrv", `{"sToken":"`+token+`","includeRetired":1}`)
	if len(got.Users) != len(want.Users) {
		t.Fatalf("got %d users, want %d", len(got.Users), len(want.Users))
	}
	for i := range got.Users {
		var a, b bytes.Buffer
		_ = json.Compact(&a, got.Users[i])
		_ = json.Compact(&b, want.Users[i])
		var am, bm map[string]any
		_ = json.Unmarshal(a.Bytes(), &am)
		_ = json.Unmarshal(b.Bytes(), &bm)
		if len(am) != len(bm) {
			t.Errorf("user %d = %s, want %s", i, a.Bytes(), b.Bytes())
		}
		for k, v := range bm {
			if am[k] != v {
				t.Errorf("user %d field %s = %v, want %v", i, k, am[k], v)
			}
		}
	}
	if _, ok := got.TotalBatchCount.(string); !ok {
		t.Errorf("totalBatchCount %#v is not a string", got.TotalBatchCount)
	}
	if _, ok := got.BatchCount.(float64); !ok {
		t.Errorf("batchCount %#v is not a number", got.BatchCount)
	}
	if got.TotalCount != float64(4) || got.SinceModifiedToken == "" || got.BatchToken != "" {
		t.Errorf("totalCount=%v sinceModifiedToken=%q batchToken=%q", got.TotalCount, got.SinceModifiedToken, got.BatchToken)
	}
	if !bytes.Contains(raw, []byte(`"uId"`)) || !bytes.Contains(raw, []byte(`"location"`)) || bytes.Contains(raw, []byte(`\u0026`)) {
		t.Errorf("answer %s lacks uId/location or escapes '&'", raw)
	}
}

func TestAuthAndRouting(t *testing.T) {
	s := vpptest.NewServer(token, vpptest.FixtureUsers()...)
	for _, tc := range []struct {
		name, path, body  string
		wantHTTP, wantErr int
	}{
		{"missing sToken", "/getVPPUsersSrv", `{}`, 200, 9601},
		{"wrong sToken", "/getVPPUsersSrv", `{"sToken":"nope"}`, 200, 9622},
		{"malformed body", "/getVPPUsersSrv", `{`, 200, 9602},
		{"bad batchToken", "/x/getVPPUsersSrv", `{"sToken":"` + token + `","batchToken":"zzz"}`, 200, 9633},
		{"bad sinceModifiedToken", "/x/getVPPUsersSrv", `{"sToken":"` + token + `","sinceModifiedToken":"zzz"}`, 200, 9633},
		{"other path", "/mdm/getVPPLicensesSrv", `{}`, 404, 0},
		{"ok under any base", "/a/b/getVPPUsersSrv", `{"sToken":"` + token + `","includeRetired":"1"}`, 200, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, res := post(t, s, tc.path, tc.body)
			if res.StatusCode != tc.wantHTTP || a.ErrorNumber != tc.wantErr {
				t.Errorf("HTTP %d errorNumber %d, want %d %d", res.StatusCode, a.ErrorNumber, tc.wantHTTP, tc.wantErr)
			}
			if tc.wantErr != 0 && a.Status != -1 {
				t.Errorf("status = %d, want -1", a.Status)
			}
		})
	}
	if s.Requests() != 6 {
		t.Errorf("Requests = %d, want 6 (the 404 is not counted)", s.Requests())
	}
}

// list pages through a listing and returns the user count and final token.
func list(t *testing.T, s *vpptest.Server, first string) (int, int, string) {
	t.Helper()
	body := first
	n, batches := 0, 0
	for {
		a, raw, _ := post(t, s, "/getVPPUsersSrv", body)
		if a.Status != 0 {
			t.Fatalf("answer %s", raw)
		}
		batches++
		n += len(a.Users)
		if a.SinceModifiedToken != "" {
			return n, batches, a.SinceModifiedToken
		}
		body = `{"sToken":"` + token + `","batchToken":"` + a.BatchToken + `"}`
	}
}

func TestListingAndDeltas(t *testing.T) {
	users := vpptest.FixtureUsers()
	users = append(users, vpptest.User{UserID: 5, Email: "r@x", Status: vpptest.StatusRetired})
	s := vpptest.NewServer(token, users...)
	s.SetBatchSize(2)

	n, batches, _ := list(t, s, `{"sToken":"`+token+`","includeRetired":0}`)
	if n != 4 || batches != 2 {
		t.Errorf("without retired: %d users in %d batches, want 4 in 2", n, batches)
	}
	n, batches, smt := list(t, s, `{"sToken":"`+token+`","includeRetired":"1"}`)
	if n != 5 || batches != 3 {
		t.Errorf("with retired: %d users in %d batches, want 5 in 3", n, batches)
	}

	u, _ := s.Get(1)
	u.Status = vpptest.StatusRetired
	s.Put(u)
	s.Remove(2)
	n, _, smt2 := list(t, s, `{"sToken":"`+token+`","sinceModifiedToken":"`+smt+`"}`)
	if n != 1 {
		t.Errorf("delta: %d users, want 1 (the retirement)", n)
	}
	n, batches, _ = list(t, s, `{"sToken":"`+token+`","sinceModifiedToken":"`+smt2+`"}`)
	if n != 0 || batches != 1 {
		t.Errorf("empty delta: %d users in %d batches, want 0 in 1", n, batches)
	}
	if got := s.Users(); len(got) != 4 || got[0].UserID != 1 || got[1].UserID != 3 {
		t.Errorf("Users() = %+v", got)
	}
}

func TestFaults(t *testing.T) {
	s := vpptest.NewServer(token, vpptest.FixtureUsers()...)
	s.SetBatchSize(2)
	s.InjectFault(vpptest.Fault{Batch: 2, ErrorNumber: 9646, Times: 2})
	s.InjectFault(vpptest.Fault{HTTPStatus: 503, RetryAfter: "7"})
	req := `{"sToken":"` + token + `"}`

	_, _, res := post(t, s, "/getVPPUsersSrv", req)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "7" {
		t.Fatalf("first request: HTTP %d Retry-After %q, want 503 7", res.StatusCode, res.Header.Get("Retry-After"))
	}
	a, _, _ := post(t, s, "/getVPPUsersSrv", req)
	if a.Status != 0 || a.BatchToken == "" {
		t.Fatalf("batch 1 should be clean: %+v", a)
	}
	next := `{"sToken":"` + token + `","batchToken":"` + a.BatchToken + `"}`
	for i := range 2 {
		if b, _, _ := post(t, s, "/getVPPUsersSrv", next); b.ErrorNumber != 9646 {
			t.Fatalf("batch 2 try %d: errorNumber %d, want 9646", i, b.ErrorNumber)
		}
	}
	if b, _, _ := post(t, s, "/getVPPUsersSrv", next); b.Status != 0 || len(b.Users) != 2 {
		t.Fatalf("batch 2 after faults: %+v", b)
	}

	s.InjectFault(vpptest.Fault{Truncate: true})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/getVPPUsersSrv", strings.NewReader(req)))
	if json.Valid(rec.Body.Bytes()) {
		t.Errorf("truncated body is valid JSON: %s", rec.Body)
	}
	s.InjectFault(vpptest.Fault{NoTokens: true})
	if a, _, _ := post(t, s, "/getVPPUsersSrv", req); a.BatchToken != "" || a.SinceModifiedToken != "" || len(a.Users) != 2 {
		t.Errorf("NoTokens answer: %+v", a)
	}
	if s.Requests() != 7 {
		t.Errorf("Requests = %d, want 7", s.Requests())
	}
}

func TestServiceConfig(t *testing.T) {
	s := vpptest.NewServer(token, vpptest.FixtureUsers()...)
	ts := httptest.NewServer(s)
	defer ts.Close()
	read := func(t *testing.T) map[string]any {
		t.Helper()
		res, err := http.Post(ts.URL+"/mdm/VPPServiceConfigSrv", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(res.Body).Decode(&m); err != nil || res.StatusCode != 200 {
			t.Fatalf("HTTP %d: %v", res.StatusCode, err)
		}
		return m
	}
	usersAt := func(t *testing.T, url string) answer {
		t.Helper()
		res, err := http.Post(url, "application/json", strings.NewReader(`{"sToken":"`+token+`","includeRetired":1}`))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var a answer
		if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a
	}

	m := read(t)
	for field, want := range map[string]any{
		"status":             float64(0),
		"getUsersSrvUrl":     ts.URL + "/mdm/getVPPUsersSrv",
		"getUserSrvUrl":      ts.URL + "/mdm/getVPPUserSrv",
		"registerUserSrvUrl": ts.URL + "/mdm/registerVPPUserSrv",
		"clientConfigSrvUrl": ts.URL + "/mdm/VPPClientConfigSrv",
	} {
		if m[field] != want {
			t.Errorf("%s = %v, want %v", field, m[field], want)
		}
	}
	for _, field := range []string{"invitationEmailUrl", "retireUserSrvUrl", "getLicensesSrvUrl", "vppWebsiteUrl", "maxBatchAssociateLicenseCount"} {
		if m[field] == nil {
			t.Errorf("%s missing", field)
		}
	}
	codes, _ := m["errorCodes"].([]any)
	if len(codes) < 10 {
		t.Fatalf("errorCodes = %v", m["errorCodes"])
	}
	if first, _ := codes[0].(map[string]any); first["errorNumber"] != float64(9600) || first["errorMessage"] == "" {
		t.Errorf("errorCodes[0] = %v", codes[0])
	}
	if a := usersAt(t, m["getUsersSrvUrl"].(string)); a.Status != 0 || len(a.Users) != 4 {
		t.Errorf("advertised users URL: %+v", a)
	}

	s.SetUsersPath("/mdm2/getVPPUsersSrv")
	m = read(t)
	if m["getUsersSrvUrl"] != ts.URL+"/mdm2/getVPPUsersSrv" {
		t.Fatalf("after the move getUsersSrvUrl = %v", m["getUsersSrvUrl"])
	}
	for _, tc := range []struct {
		name, path string
		wantErr    int
	}{
		{"old path answers 9617", "/mdm/getVPPUsersSrv", 9617},
		{"other base answers 9617", "/x/getVPPUsersSrv", 9617},
		{"new path serves", "/mdm2/getVPPUsersSrv", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a := usersAt(t, ts.URL+tc.path); a.ErrorNumber != tc.wantErr || (tc.wantErr == 0 && len(a.Users) != 4) {
				t.Errorf("answer %+v, want errorNumber %d", a, tc.wantErr)
			}
		})
	}
	s.SetUsersPath("/v3/users")
	if a := usersAt(t, ts.URL+"/mdm2/getVPPUsersSrv"); a.ErrorNumber != 9617 {
		t.Errorf("path set before: errorNumber %d, want 9617", a.ErrorNumber)
	}
	if a := usersAt(t, ts.URL+"/v3/users"); a.Status != 0 {
		t.Errorf("new path: %+v", a)
	}
	s.SetUsersPath("")
	if a := usersAt(t, ts.URL+"/mdm/getVPPUsersSrv"); a.Status != 0 {
		t.Errorf("after reset: %+v", a)
	}

	s.InjectFault(vpptest.Fault{ServiceConfig: true, HTTPStatus: 503, RetryAfter: "3"})
	s.InjectFault(vpptest.Fault{ServiceConfig: true, ErrorNumber: 9603})
	if a := usersAt(t, ts.URL+"/mdm/getVPPUsersSrv"); a.Status != 0 {
		t.Errorf("a config fault hit a users request: %+v", a)
	}
	res, err := http.Post(ts.URL+"/mdm/VPPServiceConfigSrv", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "3" {
		t.Errorf("config fault: HTTP %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if m := read(t); m["errorNumber"] != float64(9603) || m["status"] != float64(-1) {
		t.Errorf("config error fault: %v", m)
	}
	if m := read(t); m["status"] != float64(0) {
		t.Errorf("after the faults: %v", m)
	}
	if got, want := s.ConfigRequests(), 5; got != want {
		t.Errorf("ConfigRequests = %d, want %d", got, want)
	}
	if got, want := s.Requests(), 8; got != want {
		t.Errorf("Requests = %d, want %d (9617 answers included)", got, want)
	}
}
