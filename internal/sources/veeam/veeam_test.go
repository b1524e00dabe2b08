package veeam_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/syncbuf"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/pkg/events"
)

const (
	testToken    = "tok-S3CRET-static-4f9a"
	testUser     = "poller@example.com"
	testPassword = "pw-S3CRET-hunter2-77"
)

var tinyBackoff = httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}

// recorder wraps the fake to remember what the client sent and, optionally,
// to interfere before the fake answers.
type recorder struct {
	next   http.Handler
	before func(w http.ResponseWriter, r *http.Request) bool // true = handled

	mu      sync.Mutex
	queries []url.Values
	headers []http.Header
	// lookups are the escaped paths of single-user GETs, lookupHeaders
	// their headers.
	lookups       []string
	lookupHeaders []http.Header
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	switch {
	case r.URL.Path == veeamtest.UsersPath:
		rec.queries = append(rec.queries, r.URL.Query())
		rec.headers = append(rec.headers, r.Header.Clone())
	case strings.HasPrefix(r.URL.Path, veeamtest.UsersPath+"/"):
		rec.lookups = append(rec.lookups, r.URL.EscapedPath())
		rec.lookupHeaders = append(rec.lookupHeaders, r.Header.Clone())
	}
	rec.mu.Unlock()
	if rec.before != nil && rec.before(w, r) {
		return
	}
	rec.next.ServeHTTP(w, r)
}

func (rec *recorder) sent() ([]url.Values, []http.Header) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]url.Values(nil), rec.queries...), append([]http.Header(nil), rec.headers...)
}

func (rec *recorder) looked() ([]string, []http.Header) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.lookups...), append([]http.Header(nil), rec.lookupHeaders...)
}

type env struct {
	fake *veeamtest.Server
	rec  *recorder
	url  string
}

func newEnv(t *testing.T, users ...veeamtest.User) *env {
	t.Helper()
	fake := veeamtest.NewServer(testToken, users...)
	rec := &recorder{next: fake}
	ts := httptest.NewServer(rec)
	t.Cleanup(ts.Close)
	return &env{fake: fake, rec: rec, url: ts.URL}
}

func (e *env) client(t *testing.T, mod func(*veeam.Config)) *veeam.Client {
	t.Helper()
	cfg := veeam.Config{Name: "veeam", BaseURL: e.url, Token: testToken, Backoff: tinyBackoff}
	if mod != nil {
		mod(&cfg)
	}
	c, err := veeam.New(cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

func genUsers(n int) []veeamtest.User {
	out := make([]veeamtest.User, n)
	for i := range out {
		email := fmt.Sprintf("user%03d@example.com", i)
		out[i] = veeamtest.User{
			InstanceUID:     fmt.Sprintf("u-%04d", i),
			OrganizationUID: "org-1",
			UserName:        fmt.Sprintf("user%03d", i),
			Status:          "Enabled",
			Role:            "CompanyAdministrator",
			Profile:         veeamtest.Profile{Email: &email},
		}
	}
	return out
}

// ids returns the user ids and fails on a duplicate.
func ids(t *testing.T, users []events.User) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, u := range users {
		if out[u.ID] {
			t.Errorf("user %s listed twice", u.ID)
		}
		out[u.ID] = true
	}
	return out
}

func assertExactly(t *testing.T, got []events.User, want []veeamtest.User) {
	t.Helper()
	seen := ids(t, got)
	if len(got) != len(want) {
		t.Errorf("got %d users, want %d", len(got), len(want))
	}
	for _, u := range want {
		if !seen[u.InstanceUID] {
			t.Errorf("user %s missing", u.InstanceUID)
		}
	}
}

func TestDecodeFixture(t *testing.T) {
	body, err := os.ReadFile("testdata/veeam-get-users-response.json")
	if err != nil {
		t.Fatal(err)
	}
	users, total, offset, err := veeam.DecodePage("veeam", 1, body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if total != 3 || offset != 0 || len(users) != 3 {
		t.Fatalf("total %d offset %d users %d, want 3 0 3", total, offset, len(users))
	}
	want := []struct{ id, org, name string }{
		{"c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb", "b3cf51f3-d782-4b59-b4a4-adacecc260e2", "Alpha"},
		{"1ee4a452-7fda-49b7-9074-92db1dc87fa9", "5a5f200b-472e-4d27-b1d8-fe5d03f04e50", "Beta"},
		{"29aeca21-127e-4664-9c69-36a13b21f389", "a607c887-bad3-4de6-90c6-0ee3d51c55ec", "Delta"},
	}
	for i, w := range want {
		u := users[i]
		t.Run(w.name, func(t *testing.T) {
			if u.ID != w.id || u.OrganizationID != w.org || u.UserName != w.name {
				t.Errorf("got id %q org %q name %q", u.ID, u.OrganizationID, u.UserName)
			}
			if u.Source != "veeam" || u.SourceKind != events.KindVeeam {
				t.Errorf("source %q kind %q", u.Source, u.SourceKind)
			}
			// Lower-camel enums are kept as received (status is lower-cased anyway).
			if u.Status != "enabled" || u.Role != "companyOwner" {
				t.Errorf("status %q role %q", u.Status, u.Role)
			}
			if u.Email != "" || u.FirstName != "" || u.LastName != "" {
				t.Errorf("null profile fields became %q %q %q", u.Email, u.FirstName, u.LastName)
			}
			var raw map[string]any
			if err := json.Unmarshal(u.Raw, &raw); err != nil || raw["instanceUid"] != w.id {
				t.Errorf("raw is not the user's object: %s (%v)", u.Raw, err)
			}
		})
	}
}

func TestSnapshotFixtureServer(t *testing.T) {
	e := newEnv(t, veeamtest.FixtureUsers()...)
	snap, err := e.client(t, nil).Snapshot(context.Background(), sources.Request{Cursor: "ignored"})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if !snap.Complete || snap.Cursor != "" || snap.Pages != 1 {
		t.Errorf("complete %v cursor %q pages %d", snap.Complete, snap.Cursor, snap.Pages)
	}
	assertExactly(t, snap.Users, veeamtest.FixtureUsers())
	for _, u := range snap.Users {
		if u.Role != "companyOwner" || u.Status != "enabled" {
			t.Errorf("%s: role %q status %q", u.ID, u.Role, u.Status)
		}
	}
}

func TestSnapshotPaging(t *testing.T) {
	tests := []struct {
		name        string
		users       int
		pageSize    int
		maxLimit    int
		wantOffsets []string
	}{
		{name: "empty directory", users: 0, pageSize: 5, wantOffsets: []string{"0"}},
		{name: "one full page", users: 5, pageSize: 5, wantOffsets: []string{"0"}},
		{name: "several pages", users: 12, pageSize: 5, wantOffsets: []string{"0", "5", "10"}},
		{name: "exact multiple", users: 10, pageSize: 5, wantOffsets: []string{"0", "5"}},
		{name: "default page size", users: 501, wantOffsets: []string{"0", "500"}},
		{name: "server caps the limit", users: 7, pageSize: 5, maxLimit: 3, wantOffsets: []string{"0", "3", "6"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := genUsers(tc.users)
			e := newEnv(t, users...)
			if tc.maxLimit > 0 {
				e.fake.SetMaxLimit(tc.maxLimit)
			}
			snap, err := e.client(t, func(c *veeam.Config) { c.PageSize = tc.pageSize }).Snapshot(context.Background(), sources.Request{})
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			assertExactly(t, snap.Users, users)
			if snap.Pages != len(tc.wantOffsets) {
				t.Errorf("pages %d, want %d", snap.Pages, len(tc.wantOffsets))
			}
			wantLimit := strconv.Itoa(tc.pageSize)
			if tc.pageSize == 0 {
				wantLimit = "500"
			}
			queries, headers := e.rec.sent()
			if len(queries) != len(tc.wantOffsets) {
				t.Fatalf("%d requests, want %d", len(queries), len(tc.wantOffsets))
			}
			for i, q := range queries {
				if q.Get("sort") != veeamtest.QuerySort {
					t.Errorf("request %d: sort %q, want %q", i, q.Get("sort"), veeamtest.QuerySort)
				}
				if q.Get("limit") != wantLimit || q.Get("offset") != tc.wantOffsets[i] {
					t.Errorf("request %d: limit %s offset %s, want %s %s", i, q.Get("limit"), q.Get("offset"), wantLimit, tc.wantOffsets[i])
				}
				if _, ok := headers[i][http.CanonicalHeaderKey("X-Request-id")]; ok {
					t.Errorf("request %d carries X-Request-id", i)
				}
				if headers[i].Get("Authorization") != "Bearer "+testToken {
					t.Errorf("request %d: wrong authorization header", i)
				}
			}
		})
	}
}

func TestSnapshotDrift(t *testing.T) {
	early := veeamtest.User{InstanceUID: "a-0000", UserName: "early", Status: "Enabled", Role: "CompanyOwner"}
	tests := []struct {
		name      string
		faults    []veeamtest.Fault
		hook      func(fake *veeamtest.Server) func(http.ResponseWriter, *http.Request) bool
		extra     []veeamtest.User // users that must be in the final snapshot besides the 10
		wantPages int
		wantErr   string
	}{
		{
			name:      "insert shifts items between pages",
			faults:    []veeamtest.Fault{{Page: 2, InsertBefore: &early}},
			extra:     []veeamtest.User{early},
			wantPages: 3 + 3, // 10→ sees 10 unique of 11, then 11 in 3 pages
		},
		{
			name:      "wrong echoed offset once",
			faults:    []veeamtest.Fault{{Page: 2, WrongOffset: true}},
			wantPages: 2 + 3,
		},
		{
			name:    "wrong echoed offset every sweep",
			faults:  []veeamtest.Fault{{Page: 1, WrongOffset: true, Times: 3}},
			wantErr: "did not settle after 3 sweeps",
		},
		{
			name: "directory keeps growing",
			hook: func(fake *veeamtest.Server) func(http.ResponseWriter, *http.Request) bool {
				n := 0
				return func(_ http.ResponseWriter, r *http.Request) bool {
					if r.URL.Query().Get("offset") == "4" {
						n++
						fake.Put(veeamtest.User{InstanceUID: fmt.Sprintf("a-%04d", n), Status: "Enabled"})
					}
					return false
				}
			},
			wantErr: "server reports",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := genUsers(10)
			e := newEnv(t, users...)
			for _, f := range tc.faults {
				e.fake.InjectFault(f)
			}
			if tc.hook != nil {
				e.rec.before = tc.hook(e.fake)
			}
			snap, err := e.client(t, func(c *veeam.Config) { c.PageSize = 4 }).Snapshot(context.Background(), sources.Request{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			assertExactly(t, snap.Users, append(users, tc.extra...))
			if snap.Pages != tc.wantPages {
				t.Errorf("pages %d, want %d", snap.Pages, tc.wantPages)
			}
		})
	}
}

func TestSnapshotErrors(t *testing.T) {
	tests := []struct {
		name         string
		fault        veeamtest.Fault
		before       func(w http.ResponseWriter, r *http.Request) bool
		maxAttempts  int
		wantRequests int
		wantMinWait  time.Duration
		wantStatus   int    // 0 = success expected, unless wantIs is set
		wantMessage  string // in the error
		wantIs       error
	}{
		{name: "429 waits body retryAfter", fault: veeamtest.Fault{Status: 429, RetryAfter: 1}, wantRequests: 2, wantMinWait: time.Second},
		{name: "429 waits Retry-After header", fault: veeamtest.Fault{Status: 429, RetryAfterHeader: "1"}, wantRequests: 2, wantMinWait: time.Second},
		{name: "520 retried then succeeds", fault: veeamtest.Fault{Status: 520, Times: 2}, wantRequests: 3},
		{name: "503 retried then succeeds", fault: veeamtest.Fault{Status: 503}, wantRequests: 2},
		{
			name:  "transport error retried",
			fault: veeamtest.Fault{Page: 99}, // unused
			before: func() func(http.ResponseWriter, *http.Request) bool {
				var once sync.Once
				return func(http.ResponseWriter, *http.Request) bool {
					hit := false
					once.Do(func() { hit = true })
					if hit {
						panic(http.ErrAbortHandler) // drop the connection
					}
					return false
				}
			}(),
			wantRequests: 2,
		},
		{name: "520 until attempts run out", fault: veeamtest.Fault{Status: 520, Times: 10, Message: "Internal server error."}, maxAttempts: 3, wantRequests: 3, wantStatus: 520, wantMessage: "giving up after 3 attempts"},
		{name: "400 fails with the server message", fault: veeamtest.Fault{Status: 400, Message: "Property value must be larger or equal to 0."}, wantRequests: 1, wantStatus: 400, wantMessage: "Property value must be larger or equal to 0."},
		{name: "401 with a static token fails", fault: veeamtest.Fault{Status: 401}, wantRequests: 1, wantStatus: 401},
		{name: "403 fails", fault: veeamtest.Fault{Status: 403, Message: "Access denied."}, wantRequests: 1, wantStatus: 403, wantMessage: "Access denied."},
		{name: "truncated body is not retried", fault: veeamtest.Fault{Truncate: true}, wantRequests: 1, wantIs: errDecode},
		{
			name:  "asynchronous 202 is an error",
			fault: veeamtest.Fault{Page: 99},
			before: func(_ http.ResponseWriter, r *http.Request) bool {
				r.Header.Set("X-Request-id", "forced-by-test")
				return false
			},
			wantRequests: 1, wantStatus: 202,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := genUsers(3)
			e := newEnv(t, users...)
			e.fake.InjectFault(tc.fault)
			e.rec.before = tc.before
			c := e.client(t, func(c *veeam.Config) { c.MaxAttempts = tc.maxAttempts })
			start := time.Now()
			snap, err := c.Snapshot(context.Background(), sources.Request{})
			elapsed := time.Since(start)
			// Counted at the recorder: a dropped connection never reaches the fake.
			if queries, _ := e.rec.sent(); len(queries) != tc.wantRequests {
				t.Errorf("requests %d, want %d", len(queries), tc.wantRequests)
			}
			if elapsed < tc.wantMinWait {
				t.Errorf("retried after %v, server asked for %v", elapsed, tc.wantMinWait)
			}
			switch {
			case tc.wantIs == errDecode:
				var de *sources.DecodeError
				if !errors.As(err, &de) || de.Page != 1 {
					t.Fatalf("error %v, want a page 1 decode error", err)
				}
			case tc.wantStatus != 0:
				var ae *veeam.APIError
				if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
					t.Fatalf("error %v, want an APIError with status %d", err, tc.wantStatus)
				}
				for _, want := range []string{"source veeam", "page 1", tc.wantMessage} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
			default:
				if err != nil {
					t.Fatalf("snapshot: %v", err)
				}
				assertExactly(t, snap.Users, users)
			}
		})
	}
}

// errDecode marks a case expecting a *sources.DecodeError.
var errDecode = errors.New("decode error expected")

func TestSnapshotDecodeErrors(t *testing.T) {
	page := func(data string) string {
		return `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":` + data + `}`
	}
	tests := []struct {
		name      string
		body      string // served for offset 0
		page2     string // when set, page 1 is valid and this is page 2
		wantPage  int
		wantField string
	}{
		{name: "malformed json", body: `{"meta": nope}`, wantPage: 1},
		{name: "truncated", body: page(`[{"instanceUid":"a"`), wantPage: 1},
		{name: "data not an array", body: page(`{"instanceUid":"a"}`), wantPage: 1, wantField: "data"},
		{name: "data missing", body: `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}}}`, wantPage: 1, wantField: "data"},
		{name: "paging info missing", body: `{"meta":{},"data":[]}`, wantPage: 1, wantField: "meta.pagingInfo"},
		{name: "total a string", body: `{"meta":{"pagingInfo":{"total":"1","count":1,"offset":0}},"data":[]}`, wantPage: 1, wantField: "meta.pagingInfo.total"},
		{name: "instanceUid a number", body: page(`[{"instanceUid":42}]`), wantPage: 1, wantField: "data[0].instanceUid"},
		{name: "instanceUid missing", body: page(`[{"userName":"x"}]`), wantPage: 1, wantField: "data[0].instanceUid"},
		{name: "instanceUid empty", body: page(`[{"instanceUid":""}]`), wantPage: 1, wantField: "data[0].instanceUid"},
		{name: "item not an object", body: page(`["a"]`), wantPage: 1, wantField: "data[0]"},
		{name: "item null", body: page(`[null]`), wantPage: 1, wantField: "data[0]"},
		{name: "email a number", body: page(`[{"instanceUid":"a","profile":{"email":7}}]`), wantPage: 1, wantField: "data[0].profile.email"},
		{name: "profile an array", body: page(`[{"instanceUid":"a","profile":[]}]`), wantPage: 1, wantField: "data[0].profile"},
		{name: "invalid utf-8 in a user", body: page("[{\"instanceUid\":\"a\",\"userName\":\"\xff\xfe\"}]"), wantPage: 1, wantField: "data[0]"},
		{name: "invalid utf-8 in meta", body: "{\"meta\":{\"pagingInfo\":{\"total\":0,\"count\":0,\"offset\":0},\"x\":\"\xff\"},\"data\":[]}", wantPage: 1},
		{
			name:      "bad second page",
			body:      `{"meta":{"pagingInfo":{"total":2,"count":1,"offset":0}},"data":[{"instanceUid":"a"}]}`,
			page2:     `{"meta":{"pagingInfo":{"total":2,"count":1,"offset":1}},"data":[{"instanceUid":["b"]}]}`,
			wantPage:  2,
			wantField: "data[0].instanceUid",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var mu sync.Mutex
			served := 0
			e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
				mu.Lock()
				served++
				mu.Unlock()
				body := tc.body
				if r.URL.Query().Get("offset") != "0" {
					body = tc.page2
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(body))
				return true
			}
			_, err := e.client(t, func(c *veeam.Config) { c.PageSize = 1 }).Snapshot(context.Background(), sources.Request{})
			var de *sources.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *sources.DecodeError", err)
			}
			if de.Source != "veeam" || de.Page != tc.wantPage || de.Field != tc.wantField {
				t.Errorf("source %q page %d field %q, want veeam %d %q (%v)", de.Source, de.Page, de.Field, tc.wantPage, tc.wantField, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if served != tc.wantPage {
				t.Errorf("%d requests: decode errors must not be retried", served)
			}
		})
	}
}

func TestSnapshotBodyLimit(t *testing.T) {
	e := newEnv(t, veeamtest.FixtureUsers()...)
	_, err := e.client(t, func(c *veeam.Config) { c.MaxBodyBytes = 256 }).Snapshot(context.Background(), sources.Request{})
	if !errors.Is(err, httpx.ErrBodyTooLarge) {
		t.Fatalf("error %v, want ErrBodyTooLarge", err)
	}
	if e.fake.Requests() != 1 {
		t.Errorf("requests %d: an oversized body must not be retried", e.fake.Requests())
	}
}

func TestSnapshotPasswordAuth(t *testing.T) {
	tests := []struct {
		name        string
		password    string
		setup       func(t *testing.T, e *env, c *veeam.Client) // before the snapshot under test
		faults      []veeamtest.Fault
		wantStatus  int
		wantPwd     int // password grants
		wantRefresh int // refresh_token grants
		wantReqs    int
	}{
		{name: "logs in with the password", password: testPassword, wantPwd: 1, wantReqs: 1},
		{
			name:     "expired token is refreshed once and the page retried",
			password: testPassword,
			setup: func(t *testing.T, e *env, c *veeam.Client) {
				if _, err := c.Snapshot(context.Background(), sources.Request{}); err != nil {
					t.Fatalf("first snapshot: %v", err)
				}
				e.fake.ExpireTokens()
			},
			wantPwd: 1, wantRefresh: 1, wantReqs: 3,
		},
		{
			name:     "a second 401 fails the run",
			password: testPassword,
			faults:   []veeamtest.Fault{{Status: 401, Times: 2}},
			wantPwd:  1, wantRefresh: 1, wantReqs: 2, wantStatus: 401,
		},
		{
			name:     "token refreshed before it expires",
			password: testPassword,
			setup: func(t *testing.T, e *env, c *veeam.Client) {
				// Shorten every token's life to a microsecond, so the second
				// run must refresh up front rather than wait for a 401.
				e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != veeamtest.TokenPath {
						return false
					}
					rr := httptest.NewRecorder()
					e.fake.ServeHTTP(rr, r)
					var m map[string]any
					if err := json.Unmarshal(rr.Body.Bytes(), &m); err == nil && rr.Code == http.StatusOK {
						m["expires_in"] = 0.000001
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(rr.Code)
					_ = json.NewEncoder(w).Encode(m)
					return true
				}
				if _, err := c.Snapshot(context.Background(), sources.Request{}); err != nil {
					t.Fatalf("first snapshot: %v", err)
				}
			},
			wantPwd: 1, wantRefresh: 1, wantReqs: 2,
		},
		{name: "wrong password fails", password: "not-" + testPassword, wantPwd: 1, wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := genUsers(2)
			fake := veeamtest.NewServer("", users...)
			fake.SetPassword(testUser, testPassword)
			for _, f := range tc.faults {
				fake.InjectFault(f)
			}
			rec := &recorder{next: fake}
			ts := httptest.NewServer(rec)
			t.Cleanup(ts.Close)
			c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: ts.URL, Username: testUser, Password: tc.password, Backoff: tinyBackoff})
			if err != nil {
				t.Fatal(err)
			}
			e := &env{fake: fake, rec: rec, url: ts.URL}
			if tc.setup != nil {
				tc.setup(t, e, c)
			}
			snap, err := c.Snapshot(context.Background(), sources.Request{})
			if tc.wantStatus != 0 {
				var ae *veeam.APIError
				if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
					t.Fatalf("error %v, want APIError %d", err, tc.wantStatus)
				}
			} else if err != nil {
				t.Fatalf("snapshot: %v", err)
			} else {
				assertExactly(t, snap.Users, users)
			}
			if got := fake.TokenRequests("password"); got != tc.wantPwd {
				t.Errorf("password grants %d, want %d", got, tc.wantPwd)
			}
			if got := fake.TokenRequests("refresh_token"); got != tc.wantRefresh {
				t.Errorf("refresh grants %d, want %d", got, tc.wantRefresh)
			}
			if got := fake.Requests(); got != tc.wantReqs {
				t.Errorf("user requests %d, want %d", got, tc.wantReqs)
			}
		})
	}
}

// TestSecretsNeverLeak runs the failure paths with a debug logger and checks
// that no credential reaches an error or a log line, even when the server
// echoes one back.
func TestSecretsNeverLeak(t *testing.T) {
	var logBuf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var bearersMu sync.Mutex
	bearers := map[string]bool{}
	echo := func(status int) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != veeamtest.UsersPath {
				return false
			}
			auth := r.Header.Get("Authorization")
			bearersMu.Lock()
			bearers[strings.TrimPrefix(auth, "Bearer ")] = true
			bearersMu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"errors":[{"message":"token %s is not valid","type":"security","code":%d}]}`, strings.TrimPrefix(auth, "Bearer "), status)
			return true
		}
	}
	tests := []struct {
		name     string
		password bool
		fault    veeamtest.Fault
		before   func(w http.ResponseWriter, r *http.Request) bool
		maxBody  int64
	}{
		{name: "401 static", fault: veeamtest.Fault{Status: 401}},
		{name: "400 echoing the token", before: echo(400)},
		{name: "520 echoing the token until give up", before: echo(520)},
		{name: "429 then success", fault: veeamtest.Fault{Status: 429, RetryAfterHeader: "0"}},
		{name: "truncated", fault: veeamtest.Fault{Truncate: true}},
		{name: "body limit", maxBody: 64},
		{name: "password 401 echoing the access token", password: true, before: echo(401)},
		{name: "password 400 echoing the access token", password: true, before: echo(400)},
		{name: "password 520 echoing the access token", password: true, before: echo(520)},
		{name: "password refresh then fail", password: true, fault: veeamtest.Fault{Status: 401, Times: 2}},
	}
	var errs []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, veeamtest.FixtureUsers()...)
			e.fake.SetPassword(testUser, testPassword)
			e.fake.InjectFault(tc.fault)
			e.rec.before = tc.before
			c := e.client(t, func(c *veeam.Config) {
				c.Logger = logger
				c.MaxAttempts = 3
				c.MaxBodyBytes = tc.maxBody
				if tc.password {
					c.Token, c.Username, c.Password = "", testUser, testPassword
				}
			})
			_, err := c.Snapshot(context.Background(), sources.Request{})
			if err != nil {
				errs = append(errs, err.Error())
				var ae *veeam.APIError
				if errors.As(err, &ae) {
					errs = append(errs, ae.Message, ae.Code, ae.Type)
				}
			}
		})
	}
	// Also a wrong password at the token endpoint.
	e := newEnv(t)
	e.fake.SetPassword(testUser, "other")
	c := e.client(t, func(c *veeam.Config) { c.Logger = logger; c.Token, c.Username, c.Password = "", testUser, testPassword })
	if _, err := c.Snapshot(context.Background(), sources.Request{}); err != nil {
		errs = append(errs, err.Error())
	}

	secrets := []string{testToken, testPassword}
	for b := range bearers {
		if b != "" {
			secrets = append(secrets, b)
		}
	}
	if len(secrets) < 3 {
		t.Fatal("no access token was issued; the password cases did not run")
	}
	logs := logBuf.String()
	if logs == "" || len(errs) < 5 {
		t.Fatalf("failure paths did not run: %d errors, %d log bytes", len(errs), len(logs))
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the logs")
		}
		for _, e := range errs {
			if strings.Contains(e, s) {
				t.Errorf("a secret appears in error %q", strings.ReplaceAll(e, s, "<SECRET>"))
			}
		}
	}
	if !strings.Contains(strings.Join(errs, "\n"), "[redacted]") {
		t.Error("the echoed token was not redacted")
	}
}

type syncBuffer = syncbuf.Buffer

func TestSnapshotContextCancel(t *testing.T) {
	tests := []struct {
		name  string
		fault veeamtest.Fault
		// cancelOn cancels when the request arrives (true) or after the
		// fake has answered (false).
		cancelOnArrival bool
		preCancel       bool
	}{
		{name: "cancelled before the run", preCancel: true},
		{name: "cancelled during a slow request", fault: veeamtest.Fault{Delay: time.Minute}, cancelOnArrival: true},
		{name: "cancelled while waiting out a 429", fault: veeamtest.Fault{Status: 429, RetryAfter: 60}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, genUsers(3)...)
			e.fake.InjectFault(tc.fault)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.preCancel {
				cancel()
			}
			e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
				if tc.cancelOnArrival {
					cancel()
					return false
				}
				e.fake.ServeHTTP(w, r)
				cancel()
				return true
			}
			start := time.Now()
			_, err := e.client(t, nil).Snapshot(ctx, sources.Request{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("cancellation took %v", time.Since(start))
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     veeam.Config
		wantErr string
	}{
		{name: "static token", cfg: veeam.Config{Name: "veeam", BaseURL: "https://spc.example.com:1280", Token: "t"}},
		{name: "password", cfg: veeam.Config{Name: "veeam-eu", BaseURL: "https://spc.example.com:1280/", Username: "u", Password: "p"}},
		{name: "bad name", cfg: veeam.Config{Name: "Veeam", BaseURL: "https://x", Token: "t"}, wantErr: "invalid source name"},
		{name: "relative url", cfg: veeam.Config{Name: "veeam", BaseURL: "spc.example.com", Token: "t"}, wantErr: "absolute"},
		{name: "credentials in url", cfg: veeam.Config{Name: "veeam", BaseURL: "https://u:" + testPassword + "@x", Token: "t"}, wantErr: "must not carry credentials"},
		{name: "no credentials", cfg: veeam.Config{Name: "veeam", BaseURL: "https://x"}, wantErr: "required"},
		{name: "username without password", cfg: veeam.Config{Name: "veeam", BaseURL: "https://x", Username: "u"}, wantErr: "required"},
		{name: "both kinds", cfg: veeam.Config{Name: "veeam", BaseURL: "https://x", Token: "t", Username: "u", Password: "p"}, wantErr: "not both"},
		{name: "page size too large", cfg: veeam.Config{Name: "veeam", BaseURL: "https://x", Token: "t", PageSize: 501}, wantErr: "page size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := veeam.New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), testPassword) {
					t.Error("error contains the password")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Name() != tc.cfg.Name || c.Kind() != events.KindVeeam {
				t.Errorf("name %q kind %q", c.Name(), c.Kind())
			}
		})
	}
}

func FuzzDecodePage(f *testing.F) {
	fixture, err := os.ReadFile("testdata/veeam-get-users-response.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	f.Add([]byte(`{"meta":{"pagingInfo":{"total":0,"count":0,"offset":0}},"data":[]}`))
	f.Add([]byte(`{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[{"instanceUid":1}]}`))
	f.Add([]byte(`{"errors":[{"message":"x","type":"logical","code":400}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		users, total, offset, err := veeam.DecodePage("veeam", 3, body)
		if err != nil {
			var de *sources.DecodeError
			if !errors.As(err, &de) || de.Page != 3 || de.Source != "veeam" {
				t.Fatalf("error %v is not a page 3 DecodeError", err)
			}
			return
		}
		if total < 0 || offset < 0 {
			t.Fatalf("negative total %d or offset %d", total, offset)
		}
		for _, u := range users {
			if u.ID == "" || u.Source != "veeam" || u.SourceKind != events.KindVeeam {
				t.Fatalf("bad user %+v", u)
			}
			if !json.Valid(u.Raw) {
				t.Fatalf("raw %q is not json", u.Raw)
			}
			if u.Status != strings.ToLower(u.Status) {
				t.Fatalf("status %q not lower-cased", u.Status)
			}
		}
	})
}

func TestUntrustedCertificateIsNotRetried(t *testing.T) {
	fake := veeamtest.NewServer(testToken, veeamtest.FixtureUsers()...)
	ts := httptest.NewUnstartedServer(fake)
	// The failed handshakes are the point of the test, not news.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: ts.URL, Token: testToken, Backoff: tinyBackoff, MaxAttempts: 3,
		HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Snapshot(context.Background(), sources.Request{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error %v, want a certificate error", err)
	}
	if strings.Contains(err.Error(), "giving up") {
		t.Errorf("certificate error was retried: %v", err)
	}
	// With the server's CA trusted, the same client configuration works.
	c, err = veeam.New(veeam.Config{Name: "veeam", BaseURL: ts.URL, Token: testToken, HTTPClient: ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snapshot(context.Background(), sources.Request{}); err != nil {
		t.Fatalf("trusted snapshot: %v", err)
	}
}
