package veeam_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// onLookup answers single-user GETs with status and body instead of the
// fake; body may contain %s, replaced by the bearer token the client sent,
// to play a server that echoes it.
func onLookup(status int, contentType, body string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, veeamtest.UsersPath+"/") {
			return false
		}
		out := body
		if strings.Contains(body, "%s") {
			out = fmt.Sprintf(body, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(out))
		return true
	}
}

// dropFirstLookup drops the connection of the first single-user GET.
func dropFirstLookup() func(http.ResponseWriter, *http.Request) bool {
	var once sync.Once
	return func(_ http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, veeamtest.UsersPath+"/") {
			return false
		}
		once.Do(func() { panic(http.ErrAbortHandler) })
		return false
	}
}

func TestLookupUser(t *testing.T) {
	const ctJSON = "application/json"
	longID := strings.Repeat("ü", 1000)
	tests := []struct {
		name        string
		id          string // "" = u-0001, one of the fake's users
		password    bool
		setup       func(t *testing.T, e *env, c *veeam.Client)
		faults      []veeamtest.Fault
		before      func(http.ResponseWriter, *http.Request) bool
		maxAttempts int
		maxBody     int64
		preCancel   bool

		wantPresent bool
		wantLookups int           // single-user GETs that reached the server
		wantMinWait time.Duration // the server's requested wait
		wantRefresh int           // refresh_token grants
		wantStatus  int           // an *veeam.APIError with this status
		wantStops   bool          // its StopsSource()
		wantIs      error
		wantErr     string // in the error text
	}{
		{name: "present", wantPresent: true, wantLookups: 1},
		{name: "removed", setup: func(_ *testing.T, e *env, _ *veeam.Client) { e.fake.Remove("u-0001") }, wantLookups: 1},
		{name: "never existed", id: "u-9999", wantLookups: 1},
		{name: "list faults leave lookups alone", faults: []veeamtest.Fault{{Status: 520, Times: 5}}, wantPresent: true, wantLookups: 1},
		{name: "429 waits body retryAfter", faults: []veeamtest.Fault{{Lookup: true, Status: 429, RetryAfter: 1}},
			wantPresent: true, wantLookups: 2, wantMinWait: time.Second},
		{name: "429 waits Retry-After header", faults: []veeamtest.Fault{{Lookup: true, Status: 429, RetryAfterHeader: "1"}},
			wantPresent: true, wantLookups: 2, wantMinWait: time.Second},
		{name: "520 retried then present", faults: []veeamtest.Fault{{Lookup: true, Status: 520, Times: 2}}, wantPresent: true, wantLookups: 3},
		{name: "520 every time is an error, not an absence", faults: []veeamtest.Fault{{Lookup: true, Status: 520, Times: 10}},
			maxAttempts: 3, wantLookups: 3, wantStatus: 520, wantErr: "giving up after 3 attempts"},
		{name: "transport error retried", before: dropFirstLookup(), wantPresent: true, wantLookups: 2},
		{
			name:     "expired token with a password is refreshed once",
			password: true,
			setup: func(t *testing.T, e *env, c *veeam.Client) {
				if ok, err := c.LookupUser(context.Background(), "u-0001"); !ok || err != nil {
					t.Fatalf("first lookup: %v %v", ok, err)
				}
				e.fake.ExpireTokens()
			},
			wantPresent: true, wantLookups: 3, wantRefresh: 1,
		},
		{name: "second 401 with a password fails", password: true, faults: []veeamtest.Fault{{Lookup: true, Status: 401, Times: 2}},
			wantLookups: 2, wantRefresh: 1, wantStatus: 401},
		{name: "401 with a static token stops the source", faults: []veeamtest.Fault{{Lookup: true, Status: 401}},
			wantLookups: 1, wantStatus: 401, wantStops: true, wantErr: "VEEAM_TOKEN"},
		{name: "403 with a static token stops the source", faults: []veeamtest.Fault{{Lookup: true, Status: 403}},
			wantLookups: 1, wantStatus: 403, wantStops: true, wantErr: "VEEAM_TOKEN"},
		{name: "403 with a password stops the source", password: true, faults: []veeamtest.Fault{{Lookup: true, Status: 403}},
			wantLookups: 1, wantStatus: 403, wantStops: true},
		{name: "400 fails at once", faults: []veeamtest.Fault{{Lookup: true, Status: 400, Message: "Invalid UID."}},
			wantLookups: 1, wantStatus: 400, wantErr: "Invalid UID."},
		{name: "404 without the errors envelope proves nothing", before: onLookup(404, "text/html", "<html>Not Found</html>"),
			wantLookups: 1, wantStatus: 404},
		{name: "truncated 200", faults: []veeamtest.Fault{{Lookup: true, Truncate: true}}, wantLookups: 1, wantErr: "malformed json"},
		{name: "200 for another user", before: onLookup(200, ctJSON, `{"data":{"instanceUid":"u-0002"}}`),
			wantLookups: 1, wantErr: `field data.instanceUid: the server answered with another user, "u-0002"`},
		{name: "200 with data null", before: onLookup(200, ctJSON, `{"data":null}`), wantLookups: 1, wantErr: "field data: missing or null"},
		{name: "200 with a list envelope", before: onLookup(200, ctJSON, `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[{"instanceUid":"u-0001"}]}`),
			wantLookups: 1, wantErr: "field data: not an object"},
		{name: "200 with instanceUid a number", before: onLookup(200, ctJSON, `{"data":{"instanceUid":1}}`), wantLookups: 1, wantErr: "field data.instanceUid"},
		{name: "200 with invalid utf-8", before: onLookup(200, ctJSON, "{\"data\":{\"instanceUid\":\"u-0001\",\"userName\":\"\xff\"}}"),
			wantLookups: 1, wantErr: "field data: invalid utf-8"},
		{name: "200 with invalid utf-8 beside the user", before: onLookup(200, ctJSON, "{\"data\":{\"instanceUid\":\"u-0001\"},\"x\":\"\xff\"}"),
			wantLookups: 1, wantErr: "invalid utf-8"},
		{name: "body over the limit", maxBody: 64, wantLookups: 1, wantIs: httpx.ErrBodyTooLarge},
		{name: "cancelled context", preCancel: true, wantIs: context.Canceled},
		{name: "a long id is shortened in errors", id: longID, faults: []veeamtest.Fault{{Lookup: true, Status: 400}},
			wantLookups: 1, wantStatus: 400, wantErr: `lookup of user "` + strings.Repeat("ü", 32) + `"…`},
		{name: "static token echoed in an error is redacted", before: onLookup(400, ctJSON, `{"errors":[{"message":"token %s is not valid","type":"security","code":400}]}`),
			wantLookups: 1, wantStatus: 400, wantErr: "[redacted]"},
		{name: "access token echoed in an error is redacted", password: true,
			before:      onLookup(400, ctJSON, `{"errors":[{"message":"token %s is not valid","type":"security","code":400}]}`),
			wantLookups: 1, wantStatus: 400, wantErr: "[redacted]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, genUsers(3)...)
			e.fake.SetPassword(testUser, testPassword)
			for _, f := range tc.faults {
				e.fake.InjectFault(f)
			}
			e.rec.before = tc.before
			c := e.client(t, func(c *veeam.Config) {
				c.MaxAttempts, c.MaxBodyBytes = tc.maxAttempts, tc.maxBody
				if tc.password {
					c.Token, c.Username, c.Password = "", testUser, testPassword
				}
			})
			if tc.setup != nil {
				tc.setup(t, e, c)
			}
			id := tc.id
			if id == "" {
				id = "u-0001"
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.preCancel {
				cancel()
			}
			start := time.Now()
			present, err := c.LookupUser(ctx, id)
			elapsed := time.Since(start)

			wantErr := tc.wantStatus != 0 || tc.wantIs != nil || tc.wantErr != ""
			switch {
			case wantErr && err == nil:
				t.Fatalf("present %v and no error, want an error", present)
			case !wantErr && err != nil:
				t.Fatalf("lookup: %v", err)
			case present != tc.wantPresent:
				t.Errorf("present %v, want %v", present, tc.wantPresent)
			}
			if tc.wantStatus != 0 {
				var ae *veeam.APIError
				if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
					t.Fatalf("error %v, want an *veeam.APIError with status %d", err, tc.wantStatus)
				}
				if ae.StopsSource() != tc.wantStops {
					t.Errorf("StopsSource() = %v, want %v (%v)", ae.StopsSource(), tc.wantStops, err)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v, want one wrapping %v", err, tc.wantIs)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q lacks %q", err, tc.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "source veeam: lookup of user ") {
				t.Errorf("error %q does not name the source and the lookup", err)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
			if elapsed < tc.wantMinWait {
				t.Errorf("retried after %v, server asked for %v", elapsed, tc.wantMinWait)
			}
			paths, headers := e.rec.looked()
			if len(paths) != tc.wantLookups {
				t.Errorf("lookups %d, want %d", len(paths), tc.wantLookups)
			}
			if got := e.fake.TokenRequests("refresh_token"); got != tc.wantRefresh {
				t.Errorf("refresh grants %d, want %d", got, tc.wantRefresh)
			}
			if queries, _ := e.rec.sent(); len(queries) != 0 || e.fake.Requests() != 0 {
				t.Errorf("a lookup made %d list requests", len(queries))
			}
			secrets := []string{testToken, testPassword}
			for _, h := range headers {
				if _, ok := h[http.CanonicalHeaderKey("X-Request-id")]; ok {
					t.Error("a lookup carries X-Request-id")
				}
				if h.Get("Accept") != "application/json" {
					t.Errorf("Accept %q", h.Get("Accept"))
				}
				secrets = append(secrets, strings.TrimPrefix(h.Get("Authorization"), "Bearer "))
			}
			for _, s := range secrets {
				if err != nil && s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("a credential appears in error %q", strings.ReplaceAll(err.Error(), s, "<SECRET>"))
				}
			}
		})
	}
}

// TestLookupUserEscapesID checks that an id is sent as one escaped path
// segment and finds exactly that user, never a user named by a prefix of it
// or by a decoding of it.
func TestLookupUserEscapesID(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		decoy    string // another user the lookup must not find instead
		wantPath string // escaped path, written out by hand
	}{
		{name: "slash", id: "team/alice", decoy: "team", wantPath: "/api/v3/users/team%2Falice"},
		{name: "percent", id: "100%", decoy: "100", wantPath: "/api/v3/users/100%25"},
		{name: "escape sequence lookalike", id: "a%2Fb", decoy: "a/b", wantPath: "/api/v3/users/a%252Fb"},
		{name: "spaces", id: " with  spaces ", decoy: "with", wantPath: "/api/v3/users/%20with%20%20spaces%20"},
		{name: "unicode", id: "jürgen-✓", decoy: "j", wantPath: "/api/v3/users/j%C3%BCrgen-%E2%9C%93"},
		{name: "query and fragment", id: "a?b#c", decoy: "a", wantPath: "/api/v3/users/a%3Fb%23c"},
		{name: "plus is not a space", id: "a+b", decoy: "a b", wantPath: "/api/v3/users/a+b"},
		{name: "three dots", id: "...", decoy: ".", wantPath: "/api/v3/users/..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, veeamtest.User{InstanceUID: tc.id, Status: "Enabled"}, veeamtest.User{InstanceUID: tc.decoy, Status: "Enabled"})
			c := e.client(t, nil)
			if present, err := c.LookupUser(context.Background(), tc.id); !present || err != nil {
				t.Fatalf("present %v, error %v; want present", present, err)
			}
			e.fake.Remove(tc.id)
			if present, err := c.LookupUser(context.Background(), tc.id); present || err != nil {
				t.Fatalf("after removal: present %v, error %v; want absent", present, err)
			}
			paths, _ := e.rec.looked()
			if len(paths) != 2 || paths[0] != tc.wantPath || paths[1] != tc.wantPath {
				t.Errorf("paths %q, want %q twice", paths, tc.wantPath)
			}
		})
	}
}

// TestLookupUserUnaddressableID: as a path segment these ids would name the
// collection or its parent, whose 404 could pass for an absence.
func TestLookupUserUnaddressableID(t *testing.T) {
	for _, id := range []string{"", ".", ".."} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			e := newEnv(t, veeamtest.User{InstanceUID: id + "x"})
			present, err := e.client(t, nil).LookupUser(context.Background(), id)
			if present || err == nil || !strings.Contains(err.Error(), "cannot be looked up") {
				t.Errorf("present %v, error %v; want an error", present, err)
			}
			if paths, _ := e.rec.looked(); len(paths) != 0 {
				t.Errorf("requests %q", paths)
			}
		})
	}
}

// TestSnapshotMissesUserShiftedAcrossPages documents why the poller must
// confirm an absence (SPEC §1.2, §1.3): a user deleted before the current
// offset shifts every later user down a place, so a sweep can skip a
// present user while its counts still match. The client cannot see it; the
// lookup can.
func TestSnapshotMissesUserShiftedAcrossPages(t *testing.T) {
	users := genUsers(10) // u-0000 … u-0009
	e := newEnv(t, users...)
	var pages []int
	var mu sync.Mutex
	e.fake.SetBeforePage(func(page int) {
		mu.Lock()
		defer mu.Unlock()
		pages = append(pages, page)
		if page == 2 {
			// Page 1 (u-0000…u-0003) is out; now u-0004 slides onto page 1.
			e.fake.Remove("u-0000")
		}
	})
	c := e.client(t, func(c *veeam.Config) { c.PageSize = 4 })
	snap, err := c.Snapshot(context.Background(), sources.Request{})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	mu.Lock()
	if fmt.Sprint(pages) != "[1 2 3]" {
		t.Errorf("hook saw pages %v, want [1 2 3]", pages)
	}
	mu.Unlock()
	// Known flaw, handled by the poller: 9 unique users match the final
	// total of 9, so the sweep looks complete, yet it holds the deleted
	// u-0000 and misses the present u-0004.
	got := ids(t, snap.Users)
	if !snap.Complete || len(snap.Users) != 9 || got["u-0004"] || !got["u-0000"] {
		t.Fatalf("complete %v, %d users, u-0004 listed %v, u-0000 listed %v; want complete, 9, false, true",
			snap.Complete, len(snap.Users), got["u-0004"], got["u-0000"])
	}
	for id, want := range map[string]bool{"u-0004": true, "u-0000": false} {
		if present, err := c.LookupUser(context.Background(), id); present != want || err != nil {
			t.Errorf("LookupUser(%s) = %v, %v; want %v", id, present, err, want)
		}
	}
}
