package vpptest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
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

func TestLookup(t *testing.T) {
	s := vpptest.NewServer(token, vpptest.FixtureUsers()...)
	s.Put(vpptest.User{UserID: 9, Email: "gone@x", Status: vpptest.StatusDeleted})
	type lookupAnswer struct {
		Status      int            `json:"status"`
		ErrorNumber int            `json:"errorNumber"`
		User        map[string]any `json:"user"`
	}
	lookup := func(t *testing.T, path, body string) lookupAnswer {
		t.Helper()
		_, raw, res := post(t, s, path, body)
		var a lookupAnswer
		if res.StatusCode == http.StatusOK {
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatalf("answer %q: %v", raw, err)
			}
		}
		return a
	}
	for _, tc := range []struct {
		name, path, body string
		wantErr          int
		wantStatus       string // user.status of a status 0 answer
	}{
		{"present", "/mdm/getVPPUserSrv", `{"userId":1,"sToken":"` + token + `"}`, 0, vpptest.StatusAssociated},
		{"userId as a string", "/x/getVPPUserSrv", `{"userId":"3","sToken":"` + token + `"}`, 0, vpptest.StatusRegistered},
		{"deleted is reported", "/getVPPUserSrv", `{"userId":9,"sToken":"` + token + `"}`, 0, vpptest.StatusDeleted},
		{"unknown user", "/mdm/getVPPUserSrv", `{"userId":77,"sToken":"` + token + `"}`, 9609, ""},
		{"wrong sToken", "/mdm/getVPPUserSrv", `{"userId":1,"sToken":"nope"}`, 9622, ""},
		{"missing sToken", "/mdm/getVPPUserSrv", `{"userId":1}`, 9601, ""},
		{"missing userId", "/mdm/getVPPUserSrv", `{"sToken":"` + token + `"}`, 9600, ""},
		{"malformed userId", "/mdm/getVPPUserSrv", `{"userId":"one","sToken":"` + token + `"}`, 9602, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := lookup(t, tc.path, tc.body)
			if a.ErrorNumber != tc.wantErr || (tc.wantErr != 0) != (a.Status == -1) {
				t.Fatalf("status %d errorNumber %d, want errorNumber %d", a.Status, a.ErrorNumber, tc.wantErr)
			}
			if tc.wantErr == 0 && a.User["status"] != tc.wantStatus {
				t.Errorf("user = %v, want status %s", a.User, tc.wantStatus)
			}
		})
	}
	// The user carries every field of Apple's "Get a User" example that the
	// fake knows.
	u := lookup(t, "/getVPPUserSrv", `{"userId":3,"sToken":"`+token+`"}`).User
	for _, f := range []string{"userId", "email", "clientUserIdStr", "status", "inviteCode", "inviteUrl"} {
		if u[f] == nil {
			t.Errorf("user lacks %s: %v", f, u)
		}
	}
	if a := lookup(t, "/getVPPUserSrv", `{"userId":1,"sToken":"`+token+`"}`); a.User["itsIdHash"] == nil {
		t.Errorf("associated user lacks itsIdHash: %v", a.User)
	}

	s.Remove(1)
	if a := lookup(t, "/getVPPUserSrv", `{"userId":1,"sToken":"`+token+`"}`); a.ErrorNumber != 9609 {
		t.Errorf("removed user: errorNumber %d, want 9609", a.ErrorNumber)
	}
	n, _, _ := list(t, s, `{"sToken":"`+token+`","includeRetired":1}`)
	if n != 3 {
		t.Errorf("listing has %d users, want 3 (the Deleted one left out)", n)
	}

	// A lookup fault hits lookups only; a users fault, users requests only.
	s.InjectFault(vpptest.Fault{Lookup: true, ErrorNumber: 9603})
	if _, _, res := post(t, s, "/getVPPUsersSrv", `{"sToken":"`+token+`"}`); res.StatusCode != 200 {
		t.Fatalf("users request: HTTP %d", res.StatusCode)
	}
	s.InjectFault(vpptest.Fault{HTTPStatus: 503})
	if a := lookup(t, "/getVPPUserSrv", `{"userId":2,"sToken":"`+token+`"}`); a.ErrorNumber != 9603 {
		t.Errorf("lookup fault: errorNumber %d, want 9603", a.ErrorNumber)
	}
	if a := lookup(t, "/getVPPUserSrv", `{"userId":2,"sToken":"`+token+`"}`); a.Status != 0 {
		t.Errorf("after the lookup fault: %+v", a)
	}
	if _, _, res := post(t, s, "/getVPPUsersSrv", `{"sToken":"`+token+`"}`); res.StatusCode != 503 {
		t.Errorf("users fault: HTTP %d, want 503", res.StatusCode)
	}
	if got, want := s.LookupRequests(), 13; got != want {
		t.Errorf("LookupRequests = %d, want %d", got, want)
	}
}

func TestListingShapes(t *testing.T) {
	users := vpptest.FixtureUsers() // 4 users, 2 per batch
	for _, tc := range []struct {
		name          string
		fault         vpptest.Fault
		wantTotals    []string // totalBatchCount of each batch
		wantCount     bool     // totalCount on the first batch
		wantUsers     []int    // users per batch
		wantFinalLast bool     // the last batch listed carries sinceModifiedToken
	}{
		{"plain", vpptest.Fault{}, []string{"2", "2"}, true, []int{2, 2}, true},
		{"zero totalBatchCount with an empty batch", vpptest.Fault{ZeroTotalBatchCount: true, EmptyBatch: 2}, []string{"0", "0", "0"}, true, []int{2, 0, 2}, true},
		{"no totalCount", vpptest.Fault{NoTotalCount: true}, []string{"2", "2"}, false, []int{2, 2}, true},
		{"endless", vpptest.Fault{Endless: true}, []string{"0", "0", "0", "0", "0"}, true, []int{2, 2, 0, 0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := vpptest.NewServer(token, users...)
			s.SetBatchSize(2)
			s.InjectFault(tc.fault)
			body := `{"sToken":"` + token + `","includeRetired":1}`
			seen := map[string]bool{}
			for i, want := range tc.wantUsers {
				a, raw, _ := post(t, s, "/getVPPUsersSrv", body)
				if a.Status != 0 || a.TotalBatchCount != tc.wantTotals[i] || len(a.Users) != want {
					t.Fatalf("batch %d: %s, want totalBatchCount %q and %d users", i+1, raw, tc.wantTotals[i], want)
				}
				if i == 0 && (a.TotalCount != nil) != tc.wantCount {
					t.Errorf("totalCount = %v, want present=%v", a.TotalCount, tc.wantCount)
				}
				last := i == len(tc.wantUsers)-1
				if final := a.SinceModifiedToken != ""; final != (last && tc.wantFinalLast) || final == (a.BatchToken != "") {
					t.Fatalf("batch %d: batchToken %q sinceModifiedToken %q", i+1, a.BatchToken, a.SinceModifiedToken)
				}
				if seen[a.BatchToken] {
					t.Fatalf("batch %d: batchToken repeated", i+1)
				}
				seen[a.BatchToken] = true
				body = `{"sToken":"` + token + `","batchToken":"` + a.BatchToken + `"}`
			}
		})
	}
}

func TestBeforeBatch(t *testing.T) {
	s := vpptest.NewServer(token, makeFive()...)
	s.SetBatchSize(2)
	var mu sync.Mutex
	var got []int
	s.SetBeforeBatch(func(batch int) {
		mu.Lock()
		got = append(got, batch)
		mu.Unlock()
		if batch == 2 {
			// Outside the lock: the hook may use the server.
			s.Put(vpptest.User{UserID: 99, Status: vpptest.StatusRegistered})
		}
	})
	n, batches, _ := list(t, s, `{"sToken":"`+token+`","includeRetired":1}`)
	post(t, s, "/getVPPUsersSrv", `{"sToken":"`+token+`","batchToken":"zzz"}`)
	post(t, s, "/getVPPUsersSrv", `{`)
	mu.Lock()
	calls := slices.Clone(got)
	mu.Unlock()
	if n != 5 || batches != 3 || !slices.Equal(calls, []int{1, 2, 3, 0, 0}) {
		t.Errorf("%d users in %d batches, hook calls %v; want 5 in 3, [1 2 3 0 0]", n, batches, calls)
	}
	if _, ok := s.Get(99); !ok {
		t.Error("the hook's Put did not reach the directory")
	}
	if s.Requests() != len(calls) {
		t.Errorf("Requests = %d, hook calls %d: want one call per request", s.Requests(), len(calls))
	}
	s.SetBeforeBatch(nil)
	list(t, s, `{"sToken":"`+token+`"}`)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(calls) {
		t.Errorf("hook called %d more times after removal", len(got)-len(calls))
	}
}

func makeFive() []vpptest.User {
	out := make([]vpptest.User, 5)
	for i := range out {
		out[i] = vpptest.User{UserID: int64(i + 1), Status: vpptest.StatusRegistered}
	}
	return out
}
