package veeamtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

const token = "static-key"

func get(t *testing.T, srv *httptest.Server, query, auth string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+veeamtest.UsersPath+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

type envelope struct {
	Meta struct {
		PagingInfo struct{ Total, Count, Offset int } `json:"pagingInfo"`
	} `json:"meta"`
	Data   []map[string]any `json:"data"`
	Errors []struct {
		Message    string `json:"message"`
		Type       string `json:"type"`
		Code       int    `json:"code"`
		RetryAfter int    `json:"retryAfter"`
	} `json:"errors"`
}

func decode(t *testing.T, body []byte) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return e
}

// TestServesTheFixture checks that the fake's users are, item by item, the
// documented example.
func TestServesTheFixture(t *testing.T) {
	raw, err := os.ReadFile("../testdata/veeam-get-users-response.json")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Meta json.RawMessage   `json:"meta"`
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(veeamtest.NewServer(token, veeamtest.FixtureUsers()...))
	defer srv.Close()
	resp, body := get(t, srv, "", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		Meta json.RawMessage   `json:"meta"`
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if canon(t, got.Meta) != canon(t, want.Meta) {
		t.Errorf("meta %s, want %s", got.Meta, want.Meta)
	}
	byID := map[string]string{}
	for _, d := range got.Data {
		var u struct{ InstanceUID string }
		_ = json.Unmarshal(d, &u)
		byID[u.InstanceUID] = canon(t, d)
	}
	for _, d := range want.Data {
		var u struct{ InstanceUID string }
		_ = json.Unmarshal(d, &u)
		if byID[u.InstanceUID] != canon(t, d) {
			t.Errorf("user %s:\n got %s\nwant %s", u.InstanceUID, byID[u.InstanceUID], canon(t, d))
		}
	}
}

func canon(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func TestUsersEndpoint(t *testing.T) {
	users := make([]veeamtest.User, 7)
	for i := range users {
		users[i] = veeamtest.User{InstanceUID: fmt.Sprintf("u%d", 6-i), Status: "Enabled"}
	}
	desc := url.QueryEscape(`[{"property":"instanceUid","direction":"descending"}]`)
	tests := []struct {
		name       string
		query      string
		auth       string
		header     []string
		maxLimit   int
		wantStatus int
		wantIDs    string
		wantOffset int
	}{
		{name: "no token", wantStatus: 401},
		{name: "wrong token", auth: "nope", wantStatus: 401},
		{name: "default page sorted", auth: token, wantStatus: 200, wantIDs: "u0,u1,u2,u3,u4,u5,u6"},
		{name: "limit and offset", query: "?limit=3&offset=3&sort=" + url.QueryEscape(veeamtest.QuerySort), auth: token, wantStatus: 200, wantIDs: "u3,u4,u5", wantOffset: 3},
		{name: "descending", query: "?sort=" + desc, auth: token, wantStatus: 200, wantIDs: "u6,u5,u4,u3,u2,u1,u0"},
		{name: "past the end", query: "?offset=50", auth: token, wantStatus: 200, wantIDs: "", wantOffset: 50},
		{name: "server cap", query: "?limit=5", maxLimit: 2, auth: token, wantStatus: 200, wantIDs: "u0,u1"},
		{name: "limit zero", query: "?limit=0", auth: token, wantStatus: 400},
		{name: "limit too large", query: "?limit=501", auth: token, wantStatus: 400},
		{name: "negative offset", query: "?offset=-1", auth: token, wantStatus: 400},
		{name: "bad sort", query: "?sort=" + url.QueryEscape(`[{"property":"email"}]`), auth: token, wantStatus: 400},
		{name: "X-Request-id is async", auth: token, header: []string{"X-Request-id", "1"}, wantStatus: 202},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := veeamtest.NewServer(token, users...)
			if tc.maxLimit > 0 {
				fake.SetMaxLimit(tc.maxLimit)
			}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			resp, body := get(t, srv, tc.query, tc.auth, tc.header...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if fake.Requests() != 1 {
				t.Errorf("requests %d", fake.Requests())
			}
			switch {
			case tc.wantStatus == 202:
				return
			case tc.wantStatus != 200:
				e := decode(t, body)
				if len(e.Errors) != 1 || e.Errors[0].Message == "" || e.Errors[0].Code != tc.wantStatus {
					t.Errorf("errors envelope %s", body)
				}
				if strings.Contains(string(body), token) {
					t.Error("error body echoes the token")
				}
				return
			}
			e := decode(t, body)
			var got []string
			for _, d := range e.Data {
				got = append(got, d["instanceUid"].(string))
			}
			if strings.Join(got, ",") != tc.wantIDs {
				t.Errorf("ids %v, want %s", got, tc.wantIDs)
			}
			pi := e.Meta.PagingInfo
			if pi.Total != len(users) || pi.Count != len(got) || pi.Offset != tc.wantOffset {
				t.Errorf("pagingInfo %+v", pi)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	early := veeamtest.User{InstanceUID: "0"}
	tests := []struct {
		name  string
		fault veeamtest.Fault
		query string
		check func(t *testing.T, resp *http.Response, body []byte)
	}{
		{
			name:  "429 with retry hints",
			fault: veeamtest.Fault{Status: 429, RetryAfter: 2, RetryAfterHeader: "3", Message: "slow down"},
			check: func(t *testing.T, resp *http.Response, body []byte) {
				e := decode(t, body)
				if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || e.Errors[0].RetryAfter != 2 || e.Errors[0].Message != "slow down" || e.Errors[0].Type != "retryableLogical" {
					t.Errorf("status %d header %q body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
				}
			},
		},
		{
			name:  "fault for another page does not fire",
			fault: veeamtest.Fault{Page: 2, Status: 520},
			check: func(t *testing.T, resp *http.Response, _ []byte) {
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			},
		},
		{
			name:  "fault for page 2",
			fault: veeamtest.Fault{Page: 2, Status: 520},
			query: "?limit=1&offset=1",
			check: func(t *testing.T, resp *http.Response, _ []byte) {
				if resp.StatusCode != 520 {
					t.Errorf("status %d", resp.StatusCode)
				}
			},
		},
		{
			name:  "truncate",
			fault: veeamtest.Fault{Truncate: true},
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if resp.StatusCode != 200 || json.Valid(body) {
					t.Errorf("status %d valid %v", resp.StatusCode, json.Valid(body))
				}
			},
		},
		{
			name:  "wrong offset",
			fault: veeamtest.Fault{WrongOffset: true},
			check: func(t *testing.T, _ *http.Response, body []byte) {
				if decode(t, body).Meta.PagingInfo.Offset == 0 {
					t.Error("offset echoed correctly")
				}
			},
		},
		{
			name:  "insert before",
			fault: veeamtest.Fault{InsertBefore: &early},
			check: func(t *testing.T, _ *http.Response, body []byte) {
				e := decode(t, body)
				if e.Meta.PagingInfo.Total != 4 || e.Data[0]["instanceUid"] != "0" {
					t.Errorf("body %s", body)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := veeamtest.NewServer(token, veeamtest.FixtureUsers()...)
			fake.InjectFault(tc.fault)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			resp, body := get(t, srv, tc.query, token)
			tc.check(t, resp, body)
		})
	}
	t.Run("times", func(t *testing.T) {
		fake := veeamtest.NewServer(token, veeamtest.FixtureUsers()...)
		fake.InjectFault(veeamtest.Fault{Status: 520, Times: 2})
		srv := httptest.NewServer(fake)
		defer srv.Close()
		var got []int
		for range 3 {
			resp, _ := get(t, srv, "", token)
			got = append(got, resp.StatusCode)
		}
		if fmt.Sprint(got) != "[520 520 200]" {
			t.Errorf("statuses %v", got)
		}
	})
}

func TestTokenEndpoint(t *testing.T) {
	fake := veeamtest.NewServer("", veeamtest.FixtureUsers()...)
	fake.SetPassword("u", "p")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	grant := func(form url.Values) (int, map[string]any) {
		resp, err := srv.Client().PostForm(srv.URL+veeamtest.TokenPath, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	if st, m := grant(url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"x"}}); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("wrong password: %d %v", st, m)
	}
	st, m := grant(url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}})
	if st != 200 || m["expires_in"] != float64(3600) || m["access_token"] == "" || m["refresh_token"] == "" {
		t.Fatalf("password grant: %d %v", st, m)
	}
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	if resp, _ := get(t, srv, "", access); resp.StatusCode != 200 {
		t.Fatalf("issued token refused: %d", resp.StatusCode)
	}
	fake.ExpireTokens()
	if resp, _ := get(t, srv, "", access); resp.StatusCode != 401 {
		t.Fatalf("expired token accepted: %d", resp.StatusCode)
	}
	st, m = grant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if st != 200 || m["access_token"] == access {
		t.Fatalf("refresh grant: %d %v", st, m)
	}
	if resp, _ := get(t, srv, "", m["access_token"].(string)); resp.StatusCode != 200 {
		t.Fatalf("refreshed token refused: %d", resp.StatusCode)
	}
	if st, _ := grant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); st != 400 {
		t.Fatalf("spent refresh token accepted: %d", st)
	}
	if fake.TokenRequests("password") != 2 || fake.TokenRequests("refresh_token") != 2 {
		t.Errorf("grant counts %d %d", fake.TokenRequests("password"), fake.TokenRequests("refresh_token"))
	}
}

func TestConcurrentUse(t *testing.T) {
	fake := veeamtest.NewServer(token)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			id := fmt.Sprintf("u%d", i)
			fake.Put(veeamtest.User{InstanceUID: id})
			req, _ := http.NewRequest(http.MethodGet, srv.URL+veeamtest.UsersPath, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := srv.Client().Do(req); err != nil {
				t.Error(err)
			} else {
				resp.Body.Close()
			}
			if _, ok := fake.Get(id); !ok {
				t.Errorf("%s missing", id)
			}
			fake.Remove(id)
		})
	}
	wg.Wait()
	if len(fake.Users()) != 0 || fake.Requests() != 8 {
		t.Errorf("users %d requests %d", len(fake.Users()), fake.Requests())
	}
}

// do sends method to the fake's path (escaped) with auth as bearer token.
func do(t *testing.T, srv *httptest.Server, method, path, auth string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestUserEndpoint(t *testing.T) {
	fixture := veeamtest.FixtureUsers()
	slash := veeamtest.User{InstanceUID: "team/ü b", UserName: "slash", Status: "Enabled"}
	tests := []struct {
		name        string
		method      string // "" = GET
		path        string // escaped, below UsersPath
		auth        string
		header      []string
		wantStatus  int
		wantID      string // data.instanceUid of a 200
		wantLookups int    // counted by LookupRequests
	}{
		{name: "present", path: "/" + fixture[1].InstanceUID, auth: token, wantStatus: 200, wantID: fixture[1].InstanceUID, wantLookups: 1},
		{name: "escaped segment is decoded", path: "/team%2F%C3%BC%20b", auth: token, wantStatus: 200, wantID: slash.InstanceUID, wantLookups: 1},
		{name: "unescaped slash is another resource", path: "/team/%C3%BC%20b", auth: token, wantStatus: 404},
		{name: "absent", path: "/00000000-0000-0000-0000-000000000000", auth: token, wantStatus: 404, wantLookups: 1},
		{name: "no token", path: "/" + fixture[1].InstanceUID, wantStatus: 401, wantLookups: 1},
		{name: "wrong token", path: "/" + fixture[1].InstanceUID, auth: "nope", wantStatus: 401, wantLookups: 1},
		{name: "only GET", method: http.MethodDelete, path: "/" + fixture[1].InstanceUID, auth: token, wantStatus: 405},
		{name: "X-Request-id is async", path: "/" + fixture[1].InstanceUID, auth: token, header: []string{"X-Request-id", "1"}, wantStatus: 202, wantLookups: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := veeamtest.NewServer(token, append(veeamtest.FixtureUsers(), slash)...)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			resp, body := do(t, srv, method, veeamtest.UsersPath+tc.path, tc.auth, tc.header...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if fake.Requests() != 0 {
				t.Errorf("list requests %d, want 0", fake.Requests())
			}
			switch tc.wantStatus {
			case 200:
				var got struct{ Data json.RawMessage }
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("decode %s: %v", body, err)
				}
				if want := listItem(t, srv, tc.wantID); canon(t, got.Data) != want {
					t.Errorf("data %s, want the list's item %s", got.Data, want)
				}
			case 202:
			default:
				e := decode(t, body)
				if len(e.Errors) != 1 || e.Errors[0].Message == "" || e.Errors[0].Code != tc.wantStatus {
					t.Errorf("errors envelope %s", body)
				}
			}
			if fake.LookupRequests() != tc.wantLookups {
				t.Errorf("lookup requests %d, want %d", fake.LookupRequests(), tc.wantLookups)
			}
		})
	}
}

// listItem returns, canonicalised, the item of the list whose instanceUid
// is id: a lookup must serve the user in the same wire shape.
func listItem(t *testing.T, srv *httptest.Server, id string) string {
	t.Helper()
	_, body := get(t, srv, "", token)
	var list struct{ Data []json.RawMessage }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	for _, d := range list.Data {
		var u struct{ InstanceUID string }
		_ = json.Unmarshal(d, &u)
		if u.InstanceUID == id {
			return canon(t, d)
		}
	}
	t.Fatalf("user %s not in the list", id)
	return ""
}

// TestFaultTargets checks that a fault with Lookup hits only single-user
// GETs and one without it only list requests.
func TestFaultTargets(t *testing.T) {
	lookupPath := veeamtest.UsersPath + "/" + veeamtest.FixtureUsers()[0].InstanceUID
	early := veeamtest.User{InstanceUID: "0"}
	tests := []struct {
		name  string
		fault veeamtest.Fault
		order []string // "list" or "lookup", in request order
		want  string   // statuses in that order
	}{
		{name: "list fault skips lookups", fault: veeamtest.Fault{Status: 520}, order: []string{"lookup", "list", "list"}, want: "[200 520 200]"},
		{name: "list fault for a page skips lookups", fault: veeamtest.Fault{Page: 1, Status: 520}, order: []string{"lookup", "list"}, want: "[200 520]"},
		{name: "lookup fault skips lists", fault: veeamtest.Fault{Lookup: true, Status: 520}, order: []string{"list", "lookup", "lookup"}, want: "[200 520 200]"},
		{name: "lookup fault ignores page", fault: veeamtest.Fault{Lookup: true, Page: 7, Status: 429, Times: 2}, order: []string{"lookup", "lookup", "lookup"}, want: "[429 429 200]"},
		{name: "lookup truncate", fault: veeamtest.Fault{Lookup: true, Truncate: true}, order: []string{"lookup"}, want: "[200 invalid]"},
		{name: "lookup insert before", fault: veeamtest.Fault{Lookup: true, InsertBefore: &early}, order: []string{"lookup", "list"}, want: "[200 200 total 4]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := veeamtest.NewServer(token, veeamtest.FixtureUsers()...)
			fake.InjectFault(tc.fault)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			var got []string
			for _, kind := range tc.order {
				path := veeamtest.UsersPath
				if kind == "lookup" {
					path = lookupPath
				}
				resp, body := do(t, srv, http.MethodGet, path, token)
				got = append(got, strconv.Itoa(resp.StatusCode))
				switch {
				case resp.StatusCode == 200 && !json.Valid(body):
					got = append(got, "invalid")
				case tc.fault.InsertBefore != nil && kind == "list":
					got = append(got, "total", strconv.Itoa(decode(t, body).Meta.PagingInfo.Total))
				}
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("got %v, want %s", got, tc.want)
			}
			lists := strings.Count(strings.Join(tc.order, ","), "list")
			if fake.Requests() != lists || fake.LookupRequests() != len(tc.order)-lists {
				t.Errorf("requests %d lookups %d", fake.Requests(), fake.LookupRequests())
			}
		})
	}
}

func TestSetBeforePage(t *testing.T) {
	users := make([]veeamtest.User, 7)
	for i := range users {
		users[i] = veeamtest.User{InstanceUID: fmt.Sprintf("u%d", i)}
	}
	fake := veeamtest.NewServer(token, users...)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var mu sync.Mutex
	var pages []int
	seen := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(pages)
	}
	fake.SetBeforePage(func(page int) {
		mu.Lock()
		defer mu.Unlock()
		pages = append(pages, page)
		if page == 2 {
			// Runs outside the fake's lock, so it may change the directory;
			// the page it precedes already sees the change.
			fake.Remove("u0")
		}
	})
	var totals []int
	for _, q := range []string{"?limit=3&offset=0", "?limit=3&offset=3", "?limit=3&offset=6", "?offset=0"} {
		_, body := get(t, srv, q, token)
		totals = append(totals, decode(t, body).Meta.PagingInfo.Total)
	}
	if _, body := get(t, srv, "?limit=3&offset=3", "wrong"); decode(t, body).Errors == nil {
		t.Fatalf("unauthorised request served: %s", body)
	}
	do(t, srv, http.MethodGet, veeamtest.UsersPath+"/u1", token)
	if seen() != "[1 2 3 1]" || fmt.Sprint(totals) != "[7 6 6 6]" {
		t.Errorf("pages %v totals %v, want [1 2 3 1] [7 6 6 6]: one call per served list request, none for refusals or lookups", seen(), totals)
	}
	fake.SetBeforePage(nil)
	get(t, srv, "", token)
	if seen() != "[1 2 3 1]" {
		t.Errorf("hook still called after removal: pages %v", seen())
	}
}
