package vpp2_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
)

// scripted is a v2 server whose /users answers are written by the test.
type scripted struct {
	mu     sync.Mutex
	answer func(q url.Values) (int, string)
	reqs   []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/service/config") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"limits":{"maxRequestPerSecond":1000}}`))
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r.URL.RawQuery)
	f := s.answer
	s.mu.Unlock()
	code, body := f(r.URL.Query())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func (s *scripted) set(f func(q url.Values) (int, string)) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

func newScriptRig(t *testing.T, fullEvery time.Duration) (*scripted, *rig) {
	t.Helper()
	s := &scripted{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: srv.URL + "/mdm/v2", SToken: testSToken,
		Backoff: fast, MaxAttempts: 3, MaxRequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: c, Interval: time.Hour, FullSyncInterval: fullEvery})
	return s, &rig{c: c, p: p, js: js}
}

func (r *rig) tryRun() (poller.Result, error) {
	return r.p.RunOnce(context.Background(), "school")
}

const (
	aliceActive  = `{"clientUserId":"alice","email":"alice@school.example","idHash":"hashA=","status":"Associated"}`
	aliceRetired = `{"clientUserId":"alice","email":"alice-old@school.example","idHash":"hashOld=","status":"Retired"}`
	bobActive    = `{"clientUserId":"bob","email":"bob@school.example","status":"Registered"}`
	carolActive  = `{"clientUserId":"carol","email":"carol@school.example","status":"Registered"}`
)

func onePage(version string, users ...string) string {
	return `{"currentPageIndex":0,"size":1,"totalPages":1,"versionId":"` + version + `","users":[` + strings.Join(users, ",") + `]}`
}

// review17 (holds): an incremental run showing only an old retired entry of
// an active user looks her up; the lookup's answer, paged retired-first,
// keeps her active.
func TestReview17IncrementalRetiredOnlyLookupRetiredThenActiveSplit(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	// Incremental: only alice's old retired entry was modified. The
	// lookup answers her entries over two pages: retired first, then the
	// active one on the second page.
	s.set(func(q url.Values) (int, string) {
		if q.Get("clientUserId") == "alice" {
			if q.Get("pageIndex") == "1" {
				return 200, `{"currentPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + aliceActive + `]}`
			}
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + aliceRetired + `]}`
		}
		return 200, onePage("v2", aliceRetired)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete {
		t.Error("incremental run complete")
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("an old retired entry modified retired a user still active: %q", got)
	}
}

// review17 (holds): in a full listing, two retired entries on pages 1 and 2
// and the active one on the last page: no retirement, nothing published.
func TestReview17FullTwoRetiredThenActiveOnLastPage(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	retired2 := `{"clientUserId":"alice","email":"a-older@school.example","status":"Retired"}`
	s.set(func(q url.Values) (int, string) {
		if q.Get("clientUserId") != "" {
			return 200, onePage("v2")
		}
		switch q.Get("pageIndex") {
		case "", "0":
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":3,"versionId":"v2","users":[` + aliceRetired + `,` + bobActive + `]}`
		case "1":
			return 200, `{"currentPageIndex":1,"nextPageIndex":2,"totalPages":3,"versionId":"v2","users":[` + retired2 + `]}`
		default:
			return 200, `{"currentPageIndex":2,"totalPages":3,"versionId":"v2","users":[` + aliceActive + `]}`
		}
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("events %q, want none", got)
	}
}

// review17 (holds): an incremental run showing 26 users only retired (old
// duplicates of active users) falls back to a full listing, which keeps
// them all active.
func TestReview17ManyRetiredOnlyFallsBackToFull(t *testing.T) {
	s, r := newScriptRig(t, time.Hour)
	var active, retired []string
	for i := range 26 {
		active = append(active, fmt.Sprintf(`{"clientUserId":"u%02d","email":"u%02d@x","status":"Registered"}`, i, i))
		retired = append(retired, fmt.Sprintf(`{"clientUserId":"u%02d","email":"old%02d@x","status":"Retired"}`, i, i))
	}
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", active...) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		switch {
		case q.Get("sinceVersionId") != "":
			return 200, onePage("v2", retired...)
		case q.Get("clientUserId") != "":
			return 500, `{"errorNumber":9603,"errorMessage":"no lookups expected"}`
		}
		return 200, onePage("v2", append(append([]string{}, retired...), active...)...)
	})
	res, err := r.tryRun()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Error("the run did not become a full listing")
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("events %q, want none", got)
	}
}

// review17 (holds): neither the sToken (whole or its inner token) nor an
// invite code reaches the run's error, whatever Apple's message quotes.
func TestReview17SecretsNotInErrors(t *testing.T) {
	s, r := newScriptRig(t, 0)
	inner := "test-inner-token-123"
	for _, body := range []string{
		`{"errorNumber":9602,"errorMessage":"bad token ` + testSToken + ` / ` + inner + ` / ` + url.QueryEscape(testSToken) + `"}`,
		`{"currentPageIndex":0,"totalPages":1,"versionId":"v","users":[{"clientUserId":"a","status":"Registered","inviteCode":"SECRETINVITE0001","email":"\u0000x` + "\xff" + `"}]}`,
		`{"currentPageIndex":0,"totalPages":1,"versionId":"v","users":[{"clientUserId":"a","status":"Registered","inviteCode":"SECRETINVITE0001"},{"clientUserId":"a","status":"Associated","inviteCode":"SECRETINVITE0001"}]}`,
	} {
		s.set(func(q url.Values) (int, string) { return 200, body })
		_, err := r.tryRun()
		if err == nil {
			t.Errorf("no error for %s", body)
			continue
		}
		for _, secret := range []string{testSToken, inner, "SECRETINVITE0001", url.QueryEscape(testSToken)} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q carries a secret", err)
			}
		}
	}
}
