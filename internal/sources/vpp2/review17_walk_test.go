package vpp2_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources/vpp2"
)

// review17 (holds): a versionId that changes on the last page restarts the
// walk; carol, added meanwhile, is registered once.
func TestReview17VersionChangesOnLastPage(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	var page1 atomic.Int32
	s.set(func(q url.Values) (int, string) {
		if q.Get("clientUserId") != "" {
			return 200, onePage("v")
		}
		if q.Get("pageIndex") == "" {
			if page1.Load() == 0 {
				return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + aliceActive + `]}`
			}
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v3","users":[` + aliceActive + `]}`
		}
		if page1.Add(1) == 1 {
			return 200, `{"currentPageIndex":1,"totalPages":2,"versionId":"v3","users":[` + bobActive + `,` + carolActive + `]}`
		}
		return 200, `{"currentPageIndex":1,"totalPages":2,"versionId":"v3","users":[` + bobActive + `,` + carolActive + `]}`
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.trail(t), []string{"user.registered carol registered -"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// review17 (holds): 9650 on every page 2 fails the run after the bounded
// restarts, changes nothing, and the next good run works.
func TestReview17Repeated9650(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", aliceActive, bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		if q.Get("pageIndex") == "" {
			return 200, `{"currentPageIndex":0,"nextPageIndex":1,"totalPages":2,"versionId":"v2","users":[` + carolActive + `]}`
		}
		return 400, `{"errorNumber":9650,"errorMessage":"bad page index"}`
	})
	if _, err := r.tryRun(); err == nil {
		t.Fatal("no error")
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("a failed run published %q", got)
	}
	s.set(func(q url.Values) (int, string) { return 200, onePage("v3", aliceActive, bobActive, carolActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.trail(t), []string{"user.registered carol registered -"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// review17 (holds): a service configuration that points getUsers at an
// http:// URL while the base is https is refused: the sToken never goes
// out in clear text.
func TestReview17ServiceConfigHTTPDowngradeRefused(t *testing.T) {
	var plainAuth atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			plainAuth.Add(1)
		}
		_, _ = w.Write([]byte(onePage("v1")))
	}))
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mdm/v2/service/config" {
			_, _ = w.Write([]byte(`{"urls":{"getUsers":"` + plain.URL + `/mdm/v2/users"},"limits":{"maxRequestPerSecond":0}}`))
			return
		}
		_, _ = w.Write([]byte(onePage("v1", bobActive)))
	}))
	t.Cleanup(tlsSrv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: tlsSrv.URL + "/mdm/v2", SToken: testSToken,
		HTTPClient: tlsSrv.Client(), Backoff: fast, MaxAttempts: 2, MaxRequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		_, _ = c.LookupUser(ctx, "bob")
	}
	if plainAuth.Load() != 0 {
		t.Errorf("the sToken went to an http:// users URL %d times", plainAuth.Load())
	}
}
