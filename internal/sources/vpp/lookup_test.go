package vpp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

func apiError(number int, stops bool) func(error) bool {
	return func(err error) bool {
		var ae *vpp.APIError
		return errors.As(err, &ae) && ae.Number == number && ae.StopsSource() == stops
	}
}

func httpStatus(code int) func(error) bool {
	return func(err error) bool {
		var se *httpx.StatusError
		return errors.As(err, &se) && se.Code == code
	}
}

func anyError(err error) bool { return err != nil }

func TestLookupUser(t *testing.T) {
	lookupFault := func(f vpptest.Fault) func(*vpptest.Server) {
		return func(s *vpptest.Server) {
			f.Lookup = true
			s.InjectFault(f)
		}
	}
	for _, tc := range []struct {
		name        string
		setup       func(*vpptest.Server)
		id          string
		token       string // "" = the fake's
		want        bool
		wantErr     func(error) bool // nil = success expected
		wantLookups int
	}{
		{name: "present user", id: "1", want: true, wantLookups: 1},
		{name: "retired user is present", id: "2", want: true, wantLookups: 1, setup: func(s *vpptest.Server) {
			u, _ := s.Get(2)
			u.Status = vpptest.StatusRetired
			s.Put(u)
		}},
		{name: "removed user", id: "2", want: false, wantLookups: 1, setup: func(s *vpptest.Server) { s.Remove(2) }},
		{name: "never held", id: "999", want: false, wantLookups: 1},
		{name: "Deleted status", id: "3", want: false, wantLookups: 1, setup: func(s *vpptest.Server) {
			s.Put(vpptest.User{UserID: 3, Email: "u3@example.com", Status: vpptest.StatusDeleted})
		}},
		{name: "9603 then success", id: "1", want: true, wantLookups: 2, setup: lookupFault(vpptest.Fault{ErrorNumber: vpp.ErrInternal})},
		{name: "500 then success", id: "1", want: true, wantLookups: 2, setup: lookupFault(vpptest.Fault{HTTPStatus: 500})},
		{name: "302 retried, not followed", id: "1", want: true, wantLookups: 2, setup: lookupFault(vpptest.Fault{HTTPStatus: 302})},
		{name: "persistent 9603 is an error, not an absence", id: "1", wantLookups: 5 + 2,
			setup: lookupFault(vpptest.Fault{ErrorNumber: vpp.ErrInternal, Times: 100}), wantErr: apiError(vpp.ErrInternal, false)},
		{name: "9646 until attempts run out", id: "1", wantLookups: 3,
			setup: lookupFault(vpptest.Fault{ErrorNumber: vpp.ErrTooManyRequests, Times: 100}), wantErr: apiError(vpp.ErrTooManyRequests, false)},
		{name: "503 until attempts run out", id: "1", wantLookups: 3,
			setup: lookupFault(vpptest.Fault{HTTPStatus: 503, Times: 100}), wantErr: httpStatus(503)},
		{name: "unknown error number", id: "1", wantLookups: 1,
			setup: lookupFault(vpptest.Fault{ErrorNumber: 9999, ErrorMessage: "who knows"}), wantErr: apiError(9999, false)},
		{name: "9604 result not found is not taken for an absence", id: "1", wantLookups: 1,
			setup: lookupFault(vpptest.Fault{ErrorNumber: 9604, ErrorMessage: "Result not found."}), wantErr: apiError(9604, false)},
		{name: "9620 already deleted is not taken for an absence", id: "1", wantLookups: 1,
			setup: lookupFault(vpptest.Fault{ErrorNumber: 9620, ErrorMessage: "The user has already been deleted."}), wantErr: apiError(9620, false)},
		{name: "token revoked stops the source", id: "1", wantLookups: 1,
			setup: lookupFault(vpptest.Fault{ErrorNumber: vpp.ErrTokenRevoked}), wantErr: apiError(vpp.ErrTokenRevoked, true)},
		{name: "invalid token stops the source", id: "1", token: "other-token", wantLookups: 1, wantErr: apiError(vpp.ErrInvalidToken, true)},
		{name: "truncated answer", id: "1", wantLookups: 1, setup: lookupFault(vpptest.Fault{Truncate: true}), wantErr: anyError},
		{name: "404 is permanent", id: "1", wantLookups: 1, setup: lookupFault(vpptest.Fault{HTTPStatus: 404}), wantErr: httpStatus(404)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(3)...)
			if tc.setup != nil {
				tc.setup(s)
			}
			h := newClient(t, base, func(c *vpp.Config) {
				c.MaxAttempts = 3
				if tc.token != "" {
					c.SToken = tc.token
				}
			})
			present, err := h.client.LookupUser(context.Background(), tc.id)
			if got := s.LookupRequests(); got != tc.wantLookups {
				t.Errorf("lookups = %d, want %d", got, tc.wantLookups)
			}
			if s.Requests() != 0 {
				t.Errorf("a lookup made %d listing requests", s.Requests())
			}
			if tc.wantErr == nil {
				if err != nil || present != tc.want {
					t.Fatalf("LookupUser = %v, %v; want %v", present, err, tc.want)
				}
				return
			}
			if present || !tc.wantErr(err) {
				t.Fatalf("LookupUser = %v, %v; want an error of the right kind", present, err)
			}
			if !strings.Contains(err.Error(), "source vpp: lookup of user "+tc.id) {
				t.Errorf("error %q should name the source and the user", err)
			}
		})
	}
}

func TestLookupUserRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	s, base := fake(t, makeUsers(1)...)
	s.InjectFault(vpptest.Fault{Lookup: true, HTTPStatus: 503, RetryAfter: "1"})
	h := newClient(t, base)
	start := time.Now()
	present, err := h.client.LookupUser(context.Background(), "1")
	if err != nil || !present {
		t.Fatalf("LookupUser = %v, %v; want true", present, err)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("retried after %v, want at least the Retry-After of 1s", elapsed)
	}
	if s.LookupRequests() != 2 {
		t.Errorf("lookups = %d, want 2", s.LookupRequests())
	}
}

func TestLookupUserInvalidID(t *testing.T) {
	for _, id := range []string{"", "abc", "1.0", "01", "+1", " 1", "1\n", "-", "99999999999999999999", strings.Repeat("9", 2000)} {
		s, base := fake(t, makeUsers(1)...)
		h := newClient(t, base)
		present, err := h.client.LookupUser(context.Background(), id)
		if present || !errors.Is(err, vpp.ErrInvalidUserID) {
			t.Errorf("LookupUser(%.20q) = %v, %v; want ErrInvalidUserID", id, present, err)
			continue
		}
		if s.LookupRequests() != 0 {
			t.Errorf("LookupUser(%.20q) made a request", id)
		}
		if len(err.Error()) > 200 {
			t.Errorf("error for a long id is %d bytes long", len(err.Error()))
		}
	}
}

// lookupScript serves body to every getVPPUserSrv request and records the
// requests.
type lookupScript struct {
	mu     sync.Mutex
	paths  []string
	bodies []map[string]any
}

func newLookupScript(t *testing.T, body string) (*lookupScript, string) {
	t.Helper()
	ls := &lookupScript{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		ls.mu.Lock()
		ls.paths = append(ls.paths, r.Method+" "+r.URL.Path)
		ls.bodies = append(ls.bodies, req)
		ls.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return ls, ts.URL + "/mdm"
}

// appleGetUser is Apple's "Get a User" example answer, licenses and all.
const appleGetUser = `{"clientContext":"{\"guid\":\"b92\",\"hostname\":\"test.test.org\",\"ac2\":1}","expirationMillis":1898103480266,
"location":{"locationId":22222222222,"locationName":"LocationName"},"status":0,"uId":"100978",
"user":{"clientUserIdStr":"200006","email":"user1@test.com","inviteCode":"201d8c3d520e4b34bec3ed49f20b5b8a",
"inviteUrl":"https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?cc=us&inviteCode=201d8c3d520e4b34bec3ed49f20b5b8a&mt=8",
"itsIdHash":"C2Wwd8LcIaE2v6f2/mvu82Gs/Lc=","licenses":[{"licenseId":2,"adamId":408709785,"productTypeId":7,"pricingParam":"STDQ","productTypeName":"Software","isIrrevocable":false}],
"status":"Associated","userId":1}}`

func TestLookupUserAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		want    bool
		wantErr bool
	}{
		{name: "Apple's example", body: appleGetUser, want: true},
		{name: "numbers as strings", body: `{"status":"0","user":{"userId":"1","status":"Registered"}}`, want: true},
		{name: "not found, number as a string", body: `{"status":"-1","errorNumber":"9609","errorMessage":"Registered user not found."}`, want: false},
		{name: "Deleted", body: `{"status":0,"user":{"userId":1,"status":"Deleted"}}`, want: false},
		{name: "about another user", body: `{"status":0,"user":{"userId":2,"status":"Associated"}}`, wantErr: true},
		{name: "status 0 without a user", body: `{"status":0}`, wantErr: true},
		{name: "user without a status", body: `{"status":0,"user":{"userId":1}}`, wantErr: true},
		{name: "unknown status", body: `{"status":2,"user":{"userId":1,"status":"Associated"}}`, wantErr: true},
		{name: "no status", body: `{"user":{"userId":1,"status":"Associated"}}`, wantErr: true},
		{name: "malformed JSON", body: `{"status":0,"user":{`, wantErr: true},
		{name: "status -1 without a number", body: `{"status":-1}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, base := newLookupScript(t, tc.body)
			h := newClient(t, base)
			present, err := h.client.LookupUser(context.Background(), "1")
			if tc.wantErr {
				if err == nil || present {
					t.Fatalf("LookupUser = %v, %v; want an error", present, err)
				}
			} else if err != nil || present != tc.want {
				t.Fatalf("LookupUser = %v, %v; want %v", present, err, tc.want)
			}
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if len(ls.paths) != 1 || ls.paths[0] != "POST /mdm/getVPPUserSrv" {
				t.Fatalf("requests = %v, want one POST /mdm/getVPPUserSrv", ls.paths)
			}
			// userId goes as a number, as in Apple's example request.
			if got := ls.bodies[0]; len(got) != 2 || got["userId"] != float64(1) || got["sToken"] != testToken {
				t.Errorf("request body = %v, want userId 1 and the sToken", got)
			}
		})
	}
}

func TestLookupUserDiscovery(t *testing.T) {
	t.Run("getUserSrvUrl from the configuration, shared with listings", func(t *testing.T) {
		s, origin := discoFake(t, makeUsers(2)...)
		h := newClient(t, "", withDiscovery(origin))
		ctx := context.Background()
		if present, err := h.client.LookupUser(ctx, "2"); err != nil || !present {
			t.Fatalf("LookupUser = %v, %v; want true", present, err)
		}
		if _, err := h.client.Snapshot(ctx, sources.Request{}); err != nil {
			t.Fatal(err)
		}
		if s.ConfigRequests() != 1 || s.LookupRequests() != 1 {
			t.Errorf("config requests = %d, lookups = %d, want 1 and 1", s.ConfigRequests(), s.LookupRequests())
		}
	})
	t.Run("9617 re-reads the configuration", func(t *testing.T) {
		s, origin := discoFake(t, makeUsers(2)...)
		s.InjectFault(vpptest.Fault{Lookup: true, ErrorNumber: vpp.ErrURLMoved})
		h := newClient(t, "", withDiscovery(origin))
		if present, err := h.client.LookupUser(context.Background(), "2"); err != nil || !present {
			t.Fatalf("LookupUser = %v, %v; want true", present, err)
		}
		if s.ConfigRequests() != 2 || s.LookupRequests() != 2 {
			t.Errorf("config requests = %d, lookups = %d, want 2 and 2", s.ConfigRequests(), s.LookupRequests())
		}
		noLeak(t, h, nil)
	})
	t.Run("9617 without discovery says what to set", func(t *testing.T) {
		s, base := fake(t, makeUsers(2)...)
		s.InjectFault(vpptest.Fault{Lookup: true, ErrorNumber: vpp.ErrURLMoved})
		h := newClient(t, base)
		present, err := h.client.LookupUser(context.Background(), "2")
		if present || !apiError(vpp.ErrURLMoved, false)(err) || !strings.Contains(err.Error(), "getVPPUserSrv") || !strings.Contains(err.Error(), "VPP_SERVICE_CONFIG_URL") {
			t.Fatalf("LookupUser = %v, %v; want 9617 naming getVPPUserSrv and VPP_SERVICE_CONFIG_URL", present, err)
		}
	})
	for _, tc := range []struct {
		name, field string
	}{
		{"no getUserSrvUrl", ``},
		{"getUserSrvUrl of the wrong type", `,"getUserSrvUrl":["` + configSecret + `"]`},
		{"getUserSrvUrl not http", `,"getUserSrvUrl":"ftp://` + configSecret + `.example.com/getVPPUserSrv"`},
	} {
		t.Run(tc.name+": listings work, lookups fail", func(t *testing.T) {
			s, origin := discoFake(t, makeUsers(2)...)
			cfgURL, _ := configScript(t, 200, nil, `{"status":0,"getUsersSrvUrl":"`+origin+`/mdm/getVPPUsersSrv"`+tc.field+`}`)
			h := newClient(t, "", func(c *vpp.Config) { c.ServiceConfigURL = cfgURL })
			ctx := context.Background()
			if snap, err := h.client.Snapshot(ctx, sources.Request{}); err != nil || len(snap.Users) != 2 {
				t.Fatalf("Snapshot: users=%d err=%v", len(snap.Users), err)
			}
			present, err := h.client.LookupUser(ctx, "1")
			if present || !errors.Is(err, vpp.ErrServiceConfig) || !strings.Contains(err.Error(), "getUserSrvUrl") {
				t.Fatalf("LookupUser = %v, %v; want ErrServiceConfig about getUserSrvUrl", present, err)
			}
			if s.LookupRequests() != 0 {
				t.Errorf("lookups = %d, want none", s.LookupRequests())
			}
			noLeak(t, h, err)
		})
	}
}

// TestLookupSecretNeverLeaks is TestSecretNeverLeaks for LookupUser.
func TestLookupSecretNeverLeaks(t *testing.T) {
	echo := func(tmpl string) func(t *testing.T) string {
		return func(t *testing.T) string {
			_, base := newLookupScript(t, strings.ReplaceAll(tmpl, "TOKEN", testToken))
			return base
		}
	}
	for _, tc := range []struct {
		name  string
		base  func(t *testing.T) string
		token string
	}{
		{"echoed in a token error", echo(`{"status":-1,"errorNumber":9622,"errorMessage":"bad token TOKEN"}`), ""},
		{"echoed in a retryable error", echo(`{"status":-1,"errorNumber":9603,"errorMessage":"oops TOKEN"}`), ""},
		{"echoed in an unknown error", echo(`{"status":-1,"errorNumber":9999,"errorMessage":"TOKEN"}`), ""},
		{"echoed as a bad number", echo(`{"status":"TOKEN"}`), ""},
		{"echoed as a bad user", echo(`{"status":0,"user":{"userId":"TOKEN","status":"Associated"}}`), ""},
		{"echoed as malformed JSON", echo(`{"status":0,"x":TOKEN}`), ""},
		{"wrong token", func(t *testing.T) string { _, b := fake(t); return b }, testToken + "x"},
		{"http 503", func(t *testing.T) string {
			s, b := fake(t)
			s.InjectFault(vpptest.Fault{Lookup: true, HTTPStatus: 503, Times: 9})
			return b
		}, ""},
		{"connection refused", func(t *testing.T) string {
			ts := httptest.NewServer(http.NotFoundHandler())
			ts.Close()
			return ts.URL
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newClient(t, tc.base(t), func(c *vpp.Config) {
				c.MaxAttempts = 2
				if tc.token != "" {
					c.SToken = tc.token
				}
			})
			present, err := h.client.LookupUser(context.Background(), "1")
			if err == nil || present {
				t.Fatalf("LookupUser = %v, %v; want an error", present, err)
			}
			noLeak(t, h, err)
		})
	}
}
