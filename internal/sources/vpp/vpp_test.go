package vpp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/syncbuf"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/pkg/events"
)

// testToken is distinctive so that a leak is easy to spot in any output.
var testToken = base64.StdEncoding.EncodeToString([]byte(`{"token":"S3CRET-t0ken-VALUE","expDate":"2026-08-15T18:13:52-0700","orgName":"Test Org"}`))

type harness struct {
	client *vpp.Client
	logs   *syncBuffer
}

type syncBuffer = syncbuf.Buffer

func newClient(t *testing.T, baseURL string, mod ...func(*vpp.Config)) harness {
	t.Helper()
	logs := &syncBuffer{}
	cfg := vpp.Config{
		Name:    "vpp",
		BaseURL: baseURL,
		SToken:  testToken,
		Backoff: httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond},
		// Apple's minutes between 9603 attempts would stall the suite.
		InternalErrorPause: time.Millisecond,
		Logger:             slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := vpp.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), testToken) || strings.Contains(logs.String(), "S3CRET") {
			t.Errorf("sToken leaked into logs:\n%s", logs.String())
		}
	})
	return harness{client: c, logs: logs}
}

// fake starts vpptest under a base path, as Apple's /mdm.
func fake(t *testing.T, users ...vpptest.User) (*vpptest.Server, string) {
	t.Helper()
	s := vpptest.NewServer(testToken, users...)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL + "/mdm"
}

// hangup makes script close the connection without answering.
const hangup = "\x00hangup"

// script serves the given bodies in order with HTTP 200 (the last one
// repeats) and records the request bodies.
type script struct {
	mu       sync.Mutex
	bodies   []string
	requests []map[string]any
}

func newScript(t *testing.T, bodies ...string) (*script, string) {
	t.Helper()
	s := &script{bodies: bodies}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL + "/mdm"
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/getVPPUsersSrv") || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var req map[string]any
	_ = json.NewDecoder(r.Body).Decode(&req)
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, req)
	body := s.bodies[min(n, len(s.bodies)-1)]
	s.mu.Unlock()
	if body == hangup {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *script) request(i int) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[i]
}

func ids(us []events.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func makeUsers(n int) []vpptest.User {
	out := make([]vpptest.User, n)
	for i := range out {
		id := int64(i + 1)
		out[i] = vpptest.User{UserID: id, Email: fmt.Sprintf("u%d@example.com", id), ClientUserIDStr: fmt.Sprint(1000 + id), Status: vpptest.StatusRegistered, InviteCode: fmt.Sprintf("code%d", id)}
	}
	return out
}

func TestFixtureRoundTrip(t *testing.T) {
	fixture, err := os.ReadFile("testdata/vpp-getVPPUsersSrv-response.json")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		SinceModifiedToken string            `json:"sinceModifiedToken"`
		Users              []json.RawMessage `json:"users"`
	}
	if err := json.Unmarshal(fixture, &want); err != nil {
		t.Fatal(err)
	}
	fromFake := func(t *testing.T) string {
		_, u := fake(t, vpptest.FixtureUsers()...)
		return u
	}
	fromFixture := func(t *testing.T) string {
		_, u := newScript(t, string(fixture))
		return u
	}
	for _, tc := range []struct {
		name   string
		server func(*testing.T) string
		cursor bool // the fixture's own sinceModifiedToken is expected
	}{
		{"fixture bytes", fromFixture, true},
		{"fake with fixture users", fromFake, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newClient(t, tc.server(t))
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if !snap.Complete || snap.Pages != 1 || snap.Cursor == "" {
				t.Errorf("Complete=%v Pages=%d Cursor=%q, want true, 1, non-empty", snap.Complete, snap.Pages, snap.Cursor)
			}
			if tc.cursor && snap.Cursor != want.SinceModifiedToken {
				t.Errorf("Cursor = %q, want the fixture's", snap.Cursor)
			}
			fx := vpptest.FixtureUsers()
			if len(snap.Users) != len(fx) {
				t.Fatalf("got %d users, want %d", len(snap.Users), len(fx))
			}
			for i, u := range snap.Users {
				f := fx[i]
				wantU := events.User{Source: "vpp", SourceKind: "vpp", ID: fmt.Sprint(f.UserID), Email: f.Email,
					ClientUserID: f.ClientUserIDStr, Status: strings.ToLower(f.Status)}
				raw := u.Raw
				u.Raw = nil
				if fmt.Sprint(u) != fmt.Sprint(wantU) {
					t.Errorf("user %d = %+v, want %+v", i, u, wantU)
				}
				// The raw record must carry the same fields as Apple's.
				var got, exp map[string]any
				if err := json.Unmarshal(raw, &got); err != nil {
					t.Fatalf("user %d raw: %v", i, err)
				}
				_ = json.Unmarshal(want.Users[i], &exp)
				if fmt.Sprint(got) != fmt.Sprint(exp) {
					t.Errorf("user %d raw = %s, want %s", i, raw, want.Users[i])
				}
			}
		})
	}
}

func TestRequestBody(t *testing.T) {
	s, base := newScript(t,
		`{"status":0,"batchToken":"B2","users":[]}`,
		`{"status":0,"sinceModifiedToken":"SMT","users":[]}`,
		`{"status":0,"sinceModifiedToken":"SMT2","users":[]}`)
	h := newClient(t, base)
	if _, err := h.client.Snapshot(context.Background(), sources.Request{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Snapshot(context.Background(), sources.Request{Cursor: "SMT"}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []map[string]any{
		{"sToken": testToken, "includeRetired": float64(1)},
		{"sToken": testToken, "includeRetired": float64(1), "batchToken": "B2"},
		{"sToken": testToken, "sinceModifiedToken": "SMT"},
	} {
		if got := s.request(i); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("request %d = %v, want %v", i, got, want)
		}
	}
}

func TestPagingWithFake(t *testing.T) {
	for _, tc := range []struct {
		name             string
		users, batchSize int
		wantPages        int
	}{
		{"empty directory", 0, 3, 1},
		{"one batch", 3, 3, 1},
		{"exact multiple", 6, 3, 2},
		{"remainder", 7, 3, 3},
		{"batch of one", 5, 1, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(tc.users)...)
			s.SetBatchSize(tc.batchSize)
			h := newClient(t, base)
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if len(snap.Users) != tc.users || snap.Pages != tc.wantPages || s.Requests() != tc.wantPages {
				t.Errorf("users=%d pages=%d requests=%d, want %d, %d, %d", len(snap.Users), snap.Pages, s.Requests(), tc.users, tc.wantPages, tc.wantPages)
			}
			for i, u := range snap.Users {
				if u.ID != fmt.Sprint(i+1) || u.Status != "registered" || u.Source != "vpp" || u.SourceKind != events.KindVPP {
					t.Errorf("user %d = %+v", i, u)
				}
			}
		})
	}
}

func TestPagingIsStableWhileUsersChange(t *testing.T) {
	s := vpptest.NewServer(testToken, makeUsers(4)...)
	s.SetBatchSize(2)
	// Changing the directory right after batch 1 has been answered would
	// move user 3 to batch 1 and user 0 to the front if the fake re-read
	// its users for batch 2.
	var once sync.Once
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r)
		once.Do(func() {
			s.Put(vpptest.User{UserID: 0, Email: "zero@example.com", Status: vpptest.StatusRegistered})
			s.Remove(3)
		})
	}))
	t.Cleanup(ts.Close)
	h := newClient(t, ts.URL)
	snap, err := h.client.Snapshot(context.Background(), sources.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(snap.Users); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Errorf("ids = %v, want the listing as it was when it started", got)
	}
}

func TestScriptedPaging(t *testing.T) {
	u := func(id int) string { return fmt.Sprintf(`{"userId":%d,"email":"u%d@x","status":"Associated"}`, id, id) }
	batch := func(token string, users ...string) string {
		return fmt.Sprintf(`{"status":0,%s,"users":[%s]}`, token, strings.Join(users, ","))
	}
	for _, tc := range []struct {
		name         string
		bodies       []string
		wantIDs      []string
		wantRequests int
		wantErr      error // matched with errors.Is; nil = success
		wantDecode   *sources.DecodeError
	}{
		{
			name:         "empty middle batch is not the end",
			bodies:       []string{batch(`"batchToken":"b2"`, u(1)), batch(`"batchToken":"b3"`), batch(`"sinceModifiedToken":"s"`, u(2))},
			wantIDs:      []string{"1", "2"},
			wantRequests: 3,
		},
		{
			name:         "numbers as strings",
			bodies:       []string{`{"status":"0","batchCount":"1","totalBatchCount":"1","totalCount":"1","sinceModifiedToken":"s","users":[{"userId":"7","status":"Retired"}]}`},
			wantIDs:      []string{"7"},
			wantRequests: 1,
		},
		{
			name:         "neither token is retried",
			bodies:       []string{batch(`"batchToken":"b2"`, u(1)), `{"status":0,"users":[]}`, batch(`"sinceModifiedToken":"s"`, u(2))},
			wantIDs:      []string{"1", "2"},
			wantRequests: 3,
		},
		{
			name:         "neither token forever gives up",
			bodies:       []string{`{"status":0,"users":[]}`},
			wantErr:      vpp.ErrPaging,
			wantRequests: 3,
		},
		{
			name:         "same batchToken twice in a row",
			bodies:       []string{batch(`"batchToken":"b2"`, u(1)), batch(`"batchToken":"b2"`, u(2))},
			wantErr:      vpp.ErrPaging,
			wantRequests: 2,
		},
		{
			name:         "more batches than totalBatchCount",
			bodies:       []string{batch(`"totalBatchCount":"2","batchToken":"b2"`, u(1)), batch(`"totalBatchCount":"2","batchToken":"b3"`, u(2)), batch(`"sinceModifiedToken":"s"`)},
			wantErr:      vpp.ErrPaging,
			wantRequests: 2,
		},
		{
			name:         "totalBatchCount zero does not limit",
			bodies:       []string{batch(`"totalBatchCount":"0","batchToken":"b2"`, u(1)), batch(`"totalBatchCount":"0","batchToken":"b3"`, u(2)), batch(`"sinceModifiedToken":"s"`)},
			wantIDs:      []string{"1", "2"},
			wantRequests: 3,
		},
		{
			name:         "duplicate userId across batches",
			bodies:       []string{batch(`"batchToken":"b2"`, u(1)), batch(`"sinceModifiedToken":"s"`, u(1))},
			wantDecode:   &sources.DecodeError{Page: 2, Field: "users[0].userId"},
			wantRequests: 2,
		},
		{
			name:         "duplicate userId in one batch",
			bodies:       []string{batch(`"sinceModifiedToken":"s"`, u(1), u(2), u(1))},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "users[2].userId"},
			wantRequests: 1,
		},
		{
			name:         "malformed JSON",
			bodies:       []string{batch(`"batchToken":"b2"`, u(1)), `{"status":0,"users":[`},
			wantDecode:   &sources.DecodeError{Page: 2},
			wantRequests: 2,
		},
		{
			name:         "wrong type of userId",
			bodies:       []string{batch(`"sinceModifiedToken":"s"`, u(1), `{"userId":true,"status":"Registered"}`)},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "users[1].userId"},
			wantRequests: 1,
		},
		{
			name:         "wrong type of totalBatchCount",
			bodies:       []string{`{"status":0,"totalBatchCount":{},"sinceModifiedToken":"s","users":[]}`},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "totalBatchCount"},
			wantRequests: 1,
		},
		{
			name:         "wrong type of email",
			bodies:       []string{`{"status":0,"sinceModifiedToken":"s","users":[{"userId":1,"status":"Registered","email":3}]}`},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "users[0].email"},
			wantRequests: 1,
		},
		{
			name:         "users not an array",
			bodies:       []string{`{"status":0,"sinceModifiedToken":"s","users":{}}`},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "users"},
			wantRequests: 1,
		},
		{
			name:         "missing status",
			bodies:       []string{`{"sinceModifiedToken":"s","users":[]}`},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "status"},
			wantRequests: 1,
		},
		{
			name:         "unknown status",
			bodies:       []string{`{"status":2,"sinceModifiedToken":"s","users":[]}`},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "status"},
			wantRequests: 1,
		},
		{
			name:         "invalid UTF-8",
			bodies:       []string{batch(`"sinceModifiedToken":"s"`, u(1), "{\"userId\":2,\"status\":\"Registered\",\"email\":\"a\xff@x\"}")},
			wantDecode:   &sources.DecodeError{Page: 1, Field: "users[1]"},
			wantRequests: 1,
		},
		{
			name:         "transport failure is retried",
			bodies:       []string{hangup, batch(`"sinceModifiedToken":"s"`, u(1))},
			wantIDs:      []string{"1"},
			wantRequests: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := newScript(t, tc.bodies...)
			h := newClient(t, base, func(c *vpp.Config) { c.MaxAttempts = 3 })
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if got := s.count(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			switch {
			case tc.wantDecode != nil:
				var de *sources.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want a DecodeError", err)
				}
				if de.Source != "vpp" || de.Page != tc.wantDecode.Page || de.Field != tc.wantDecode.Field {
					t.Errorf("DecodeError{Source:%q Page:%d Field:%q}, want page %d field %q (%v)", de.Source, de.Page, de.Field, tc.wantDecode.Page, tc.wantDecode.Field, err)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				if got := ids(snap.Users); !slices.Equal(got, tc.wantIDs) {
					t.Errorf("ids = %v, want %v", got, tc.wantIDs)
				}
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name         string
		token        string
		faults       []vpptest.Fault
		wantNumber   int // 0 = success expected
		wantStops    bool
		wantRequests int
	}{
		{name: "invalid token", token: "other-token", wantNumber: vpp.ErrInvalidToken, wantStops: true, wantRequests: 1},
		{name: "login required", faults: []vpptest.Fault{{ErrorNumber: vpp.ErrLoginRequired}}, wantNumber: vpp.ErrLoginRequired, wantStops: true, wantRequests: 1},
		{name: "invalid argument fails at once", faults: []vpptest.Fault{{ErrorNumber: vpp.ErrInvalidArgument}}, wantNumber: vpp.ErrInvalidArgument, wantRequests: 1},
		{name: "9603 retried then succeeds", faults: []vpptest.Fault{{ErrorNumber: vpp.ErrInternal, Times: 2}}, wantRequests: 5},
		{name: "9644 retried then succeeds", faults: []vpptest.Fault{{ErrorNumber: vpp.ErrMaintenance}}, wantRequests: 4},
		{name: "9646 on batch 2 retried", faults: []vpptest.Fault{{Batch: 2, ErrorNumber: vpp.ErrTooManyRequests}}, wantRequests: 4},
		{name: "9646 until attempts run out", faults: []vpptest.Fault{{ErrorNumber: vpp.ErrTooManyRequests, Times: 10}}, wantNumber: vpp.ErrTooManyRequests, wantRequests: 4},
		// Batches 1 and 2 (refused), then 1, 2 and 3 of a new listing.
		{name: "9633 in a full sync restarts the listing", faults: []vpptest.Fault{{Batch: 2, ErrorNumber: vpp.ErrBatchNotRecoverable}}, wantRequests: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(5)...)
			s.SetBatchSize(2)
			for _, f := range tc.faults {
				s.InjectFault(f)
			}
			h := newClient(t, base, func(c *vpp.Config) {
				c.MaxAttempts = 4
				if tc.token != "" {
					c.SToken = tc.token
				}
			})
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if got := s.Requests(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			if tc.wantNumber == 0 {
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				if len(snap.Users) != 5 {
					t.Errorf("got %d users, want 5", len(snap.Users))
				}
				return
			}
			var ae *vpp.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *vpp.APIError", err)
			}
			if ae.Number != tc.wantNumber || ae.StopsSource() != tc.wantStops {
				t.Errorf("APIError %d stops=%v, want %d stops=%v", ae.Number, ae.StopsSource(), tc.wantNumber, tc.wantStops)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tc.wantNumber)) || !strings.Contains(err.Error(), "source vpp: batch") {
				t.Errorf("error %q should name the source, batch and number", err)
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fault        vpptest.Fault
		wantCode     int // 0 = success expected
		wantRequests int
	}{
		{"503 retried", vpptest.Fault{HTTPStatus: 503, Times: 2}, 0, 3},
		{"500 retried", vpptest.Fault{HTTPStatus: 500}, 0, 2},
		{"429 retried", vpptest.Fault{HTTPStatus: 429, RetryAfter: "0"}, 0, 2},
		{"302 retried, not followed", vpptest.Fault{HTTPStatus: 302}, 0, 2},
		{"400 is permanent", vpptest.Fault{HTTPStatus: 400}, 400, 1},
		{"404 is permanent", vpptest.Fault{HTTPStatus: 404}, 404, 1},
		{"503 until attempts run out", vpptest.Fault{HTTPStatus: 503, Times: 10}, 503, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(2)...)
			s.InjectFault(tc.fault)
			h := newClient(t, base, func(c *vpp.Config) { c.MaxAttempts = 3 })
			_, err := h.client.Snapshot(context.Background(), sources.Request{})
			if got := s.Requests(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				return
			}
			var se *httpx.StatusError
			if !errors.As(err, &se) || se.Code != tc.wantCode {
				t.Fatalf("err = %v, want status %d", err, tc.wantCode)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func() string
		atLeast    time.Duration
	}{
		{"seconds", func() string { return "1" }, time.Second},
		// An HTTP date has whole seconds: two seconds ahead is at least one.
		{"http date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, base := fake(t, makeUsers(1)...)
			s.InjectFault(vpptest.Fault{HTTPStatus: 503, RetryAfter: tc.retryAfter()})
			h := newClient(t, base)
			start := time.Now()
			if _, err := h.client.Snapshot(context.Background(), sources.Request{}); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if elapsed := time.Since(start); elapsed < tc.atLeast {
				t.Errorf("retried after %v, want at least %v", elapsed, tc.atLeast)
			}
			if s.Requests() != 2 {
				t.Errorf("requests = %d, want 2", s.Requests())
			}
		})
	}
}

func TestIncremental(t *testing.T) {
	s, base := fake(t, makeUsers(5)...)
	s.SetBatchSize(2)
	h := newClient(t, base)
	ctx := context.Background()

	full, err := h.client.Snapshot(ctx, sources.Request{})
	if err != nil || !full.Complete || len(full.Users) != 5 {
		t.Fatalf("full sync: complete=%v users=%d err=%v", full.Complete, len(full.Users), err)
	}

	u2, _ := s.Get(2)
	u2.Status = vpptest.StatusRetired
	s.Put(u2)
	s.Put(vpptest.User{UserID: 9, Email: "new@example.com", Status: vpptest.StatusRegistered})
	s.Remove(5)

	inc, err := h.client.Snapshot(ctx, sources.Request{Cursor: full.Cursor})
	if err != nil {
		t.Fatalf("incremental: %v", err)
	}
	if inc.Complete {
		t.Error("incremental snapshot claims to be complete")
	}
	if got := ids(inc.Users); !slices.Equal(got, []string{"2", "9"}) {
		t.Errorf("incremental ids = %v, want [2 9] (retirement included via the baked flag)", got)
	}
	if inc.Users[0].Status != events.StatusRetired {
		t.Errorf("user 2 status = %q, want retired", inc.Users[0].Status)
	}
	if inc.Cursor == "" || inc.Cursor == full.Cursor {
		t.Errorf("incremental cursor %q should be new", inc.Cursor)
	}

	again, err := h.client.Snapshot(ctx, sources.Request{Cursor: inc.Cursor})
	if err != nil || len(again.Users) != 0 || again.Pages != 1 || again.Cursor == "" {
		t.Errorf("no-change incremental: users=%d pages=%d cursor=%q err=%v", len(again.Users), again.Pages, again.Cursor, err)
	}

	forced, err := h.client.Snapshot(ctx, sources.Request{Cursor: inc.Cursor, Full: true})
	if err != nil || !forced.Complete || len(forced.Users) != 5 {
		t.Errorf("forced full: complete=%v users=%d err=%v", forced.Complete, len(forced.Users), err)
	}
}

func TestIncrementalRestartsAsFull(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cursor string
		faults []vpptest.Fault
	}{
		{"9633 on first batch", "", []vpptest.Fault{{ErrorNumber: vpp.ErrBatchNotRecoverable}}},
		{"9629 on second batch", "", []vpptest.Fault{{Batch: 2, ErrorNumber: vpp.ErrTokenNotApplicable}}},
		{"cursor the server cannot read", "garbage", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(3)...)
			s.SetBatchSize(1)
			h := newClient(t, base)
			ctx := context.Background()
			full, err := h.client.Snapshot(ctx, sources.Request{})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range s.Users() {
				s.Put(u) // touch every user so that the delta pages too
			}
			for _, f := range tc.faults {
				s.InjectFault(f)
			}
			cursor := full.Cursor
			if tc.cursor != "" {
				cursor = tc.cursor
			}
			snap, err := h.client.Snapshot(ctx, sources.Request{Cursor: cursor})
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if !snap.Complete || len(snap.Users) != 3 {
				t.Errorf("complete=%v users=%d, want a complete listing of 3", snap.Complete, len(snap.Users))
			}
			if !strings.Contains(h.logs.String(), "full sync") {
				t.Errorf("restart not logged:\n%s", h.logs)
			}
		})
	}
}

func TestTruncatedBody(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault vpptest.Fault
		page  int
	}{
		{"first batch", vpptest.Fault{Truncate: true}, 1},
		{"second batch", vpptest.Fault{Batch: 2, Truncate: true}, 2},
		{"error answer", vpptest.Fault{ErrorNumber: vpp.ErrInternal, Truncate: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(4)...)
			s.SetBatchSize(2)
			s.InjectFault(tc.fault)
			h := newClient(t, base)
			_, err := h.client.Snapshot(context.Background(), sources.Request{})
			var de *sources.DecodeError
			if !errors.As(err, &de) || de.Page != tc.page || de.Source != "vpp" {
				t.Fatalf("err = %v, want DecodeError on page %d", err, tc.page)
			}
			if s.Requests() != tc.page {
				t.Errorf("requests = %d, want %d (decode errors are not retried)", s.Requests(), tc.page)
			}
		})
	}
}

func TestNoTokensFaultRetried(t *testing.T) {
	s, base := fake(t, makeUsers(4)...)
	s.SetBatchSize(2)
	s.InjectFault(vpptest.Fault{Batch: 2, NoTokens: true, Times: 2})
	h := newClient(t, base)
	snap, err := h.client.Snapshot(context.Background(), sources.Request{})
	if err != nil || len(snap.Users) != 4 || s.Requests() != 4 {
		t.Fatalf("users=%d requests=%d err=%v, want 4 users in 4 requests", len(snap.Users), s.Requests(), err)
	}
}

func TestBodyLimit(t *testing.T) {
	_, base := fake(t, makeUsers(20)...)
	h := newClient(t, base, func(c *vpp.Config) { c.MaxBodyBytes = 512 })
	_, err := h.client.Snapshot(context.Background(), sources.Request{})
	if !errors.Is(err, httpx.ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("during a slow answer", func(t *testing.T) {
		s, base := fake(t, makeUsers(1)...)
		s.InjectFault(vpptest.Fault{Delay: time.Minute})
		h := newClient(t, base)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := h.client.Snapshot(ctx, sources.Request{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("took %v to notice the deadline", time.Since(start))
		}
	})
	t.Run("during a Retry-After wait", func(t *testing.T) {
		s, base := fake(t, makeUsers(1)...)
		s.InjectFault(vpptest.Fault{HTTPStatus: 503, RetryAfter: "3600"})
		h := newClient(t, base)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := h.client.Snapshot(ctx, sources.Request{})
		if !errors.Is(err, context.DeadlineExceeded) || s.Requests() != 1 {
			t.Fatalf("err = %v requests = %d, want DeadlineExceeded after 1 request", err, s.Requests())
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		s, base := fake(t, makeUsers(1)...)
		h := newClient(t, base)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := h.client.Snapshot(ctx, sources.Request{})
		if !errors.Is(err, context.Canceled) || s.Requests() != 0 {
			t.Fatalf("err = %v requests = %d, want Canceled and no request", err, s.Requests())
		}
	})
}

// TestSecretNeverLeaks drives every failure path with a server that echoes
// the sToken wherever it can and checks errors and logs.
func TestSecretNeverLeaks(t *testing.T) {
	echo := func(t *testing.T, tmpl string) string {
		_, base := newScript(t, strings.ReplaceAll(tmpl, "TOKEN", testToken))
		return base
	}
	for _, tc := range []struct {
		name string
		base func(t *testing.T) string
	}{
		{"echoed in errorMessage", func(t *testing.T) string {
			return echo(t, `{"status":-1,"errorNumber":9622,"errorMessage":"bad token TOKEN"}`)
		}},
		{"echoed in retryable errorMessage", func(t *testing.T) string {
			return echo(t, `{"status":-1,"errorNumber":9603,"errorMessage":"oops TOKEN"}`)
		}},
		{"echoed as a bad number", func(t *testing.T) string {
			return echo(t, `{"status":0,"totalBatchCount":"TOKEN","users":[]}`)
		}},
		{"echoed as malformed JSON", func(t *testing.T) string { return echo(t, `{"status":0,"x":TOKEN}`) }},
		{"echoed as a bad user", func(t *testing.T) string {
			return echo(t, `{"status":0,"sinceModifiedToken":"s","users":[{"userId":"TOKEN"}]}`)
		}},
		{"wrong token", func(t *testing.T) string { _, b := fake(t); return b }},
		{"http 503", func(t *testing.T) string {
			s, b := fake(t)
			s.InjectFault(vpptest.Fault{HTTPStatus: 503, Times: 9})
			return b
		}},
		{"connection refused", func(t *testing.T) string {
			ts := httptest.NewServer(http.NotFoundHandler())
			ts.Close()
			return ts.URL
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newClient(t, tc.base(t), func(c *vpp.Config) {
				c.MaxAttempts = 2
				if tc.name == "wrong token" {
					c.SToken = testToken + "x"
				}
			})
			_, err := h.client.Snapshot(context.Background(), sources.Request{Cursor: "c"})
			if err == nil {
				t.Fatal("want an error")
			}
			if strings.Contains(err.Error(), testToken[:20]) || strings.Contains(err.Error(), "S3CRET") {
				t.Errorf("sToken leaked into error: %v", err)
			}
			if strings.Contains(h.logs.String(), testToken[:20]) {
				t.Errorf("sToken leaked into logs:\n%s", h.logs)
			}
		})
	}
	t.Run("DecodeSToken errors", func(t *testing.T) {
		bad := base64.StdEncoding.EncodeToString([]byte(`{"token":"S3CRET","expDate":`))
		for _, s := range []string{bad, "S3CRET!!!", base64.StdEncoding.EncodeToString([]byte(`S3CRET`))} {
			_, err := vpp.DecodeSToken(s)
			if err == nil || strings.Contains(err.Error(), "S3CRET") || strings.Contains(err.Error(), s) {
				t.Errorf("DecodeSToken error %v for a bad token", err)
			}
		}
	})
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     vpp.Config
		wantErr bool
	}{
		{"valid", vpp.Config{Name: "vpp", BaseURL: "https://vpp.itunes.apple.com/mdm", SToken: "t"}, false},
		{"token with newline from a file", vpp.Config{Name: "vpp-2", BaseURL: "http://localhost:1/mdm/", SToken: "t\n"}, false},
		{"bad name", vpp.Config{Name: "VPP", BaseURL: "https://x", SToken: "t"}, true},
		{"empty name", vpp.Config{BaseURL: "https://x", SToken: "t"}, true},
		{"bad url", vpp.Config{Name: "vpp", BaseURL: "://x", SToken: "t"}, true},
		{"no scheme", vpp.Config{Name: "vpp", BaseURL: "vpp.itunes.apple.com/mdm", SToken: "t"}, true},
		{"blank token", vpp.Config{Name: "vpp", BaseURL: "https://x", SToken: " \n"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := vpp.New(tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && (c.Name() != tc.cfg.Name || c.Kind() != events.KindVPP) {
				t.Errorf("Name=%q Kind=%q", c.Name(), c.Kind())
			}
		})
	}
}

func TestTrimmedTokenIsSent(t *testing.T) {
	_, base := fake(t, makeUsers(1)...)
	h := newClient(t, base, func(c *vpp.Config) { c.SToken = "  " + testToken + "\n" })
	if _, err := h.client.Snapshot(context.Background(), sources.Request{}); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeSToken(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	pdt := time.FixedZone("", -7*3600)
	for _, tc := range []struct {
		name    string
		in      string
		want    vpp.TokenInfo
		wantErr bool
	}{
		{"apple format", enc(`{"token":"abc","expDate":"2026-08-15T18:13:52-0700","orgName":"Acme"}`),
			vpp.TokenInfo{OrgName: "Acme", ExpDate: time.Date(2026, 8, 15, 18, 13, 52, 0, pdt)}, false},
		{"surrounding whitespace", "\n " + enc(`{"token":"abc","expDate":"2026-08-15T18:13:52-0700","orgName":"Acme"}`) + "\n",
			vpp.TokenInfo{OrgName: "Acme", ExpDate: time.Date(2026, 8, 15, 18, 13, 52, 0, pdt)}, false},
		{"rfc3339 and no padding", strings.TrimRight(enc(`{"token":"abc","expDate":"2026-08-15T18:13:52Z","orgName":"A"}`), "="),
			vpp.TokenInfo{OrgName: "A", ExpDate: time.Date(2026, 8, 15, 18, 13, 52, 0, time.UTC)}, false},
		{"empty", "  ", vpp.TokenInfo{}, true},
		{"not base64", "%%%", vpp.TokenInfo{}, true},
		{"not json", enc("hello"), vpp.TokenInfo{}, true},
		{"no token field", enc(`{"expDate":"2026-08-15T18:13:52-0700","orgName":"A"}`), vpp.TokenInfo{}, true},
		{"bad date", enc(`{"token":"abc","expDate":"next year","orgName":"A"}`), vpp.TokenInfo{OrgName: "A"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vpp.DecodeSToken(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got.OrgName != tc.want.OrgName || !got.ExpDate.Equal(tc.want.ExpDate) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConcurrentSnapshots(t *testing.T) {
	s, base := fake(t, makeUsers(10)...)
	s.SetBatchSize(3)
	h := newClient(t, base)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			snap, err := h.client.Snapshot(context.Background(), sources.Request{})
			if err == nil && len(snap.Users) != 10 {
				err = fmt.Errorf("got %d users", len(snap.Users))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
