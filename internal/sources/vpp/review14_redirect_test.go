package vpp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
)

// TestReview14VPPRedirectNamesTargetHost: SPEC §1.3 says "HTTP clients of
// the sources never follow redirects with credentials (a redirect is an
// error naming the status and the target host)". The Veeam client does
// (RedirectError); the VPP client answers a 307 from getVPPUsersSrv with a
// bare "http status 307" (retried as if it were throttling), so an operator
// whose VPP endpoint now points elsewhere cannot tell where.
func TestReview14VPPRedirectNamesTargetHost(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Location", "https://collector.evil.example:8443/steal")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: srv.URL, SToken: testToken, HTTPClient: srv.Client(),
		MaxAttempts: 2, Backoff: httpx.Backoff{Base: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Snapshot(context.Background(), sources.Request{})
	if err == nil {
		t.Fatal("a 307 gave no error")
	}
	t.Logf("error after %d requests: %v", hits.Load(), err)
	if !strings.Contains(err.Error(), "collector.evil.example:8443") {
		t.Errorf("the redirect error does not name the target host: %v", err)
	}
	if !strings.Contains(err.Error(), "307") {
		t.Errorf("the redirect error does not name the status: %v", err)
	}
}
