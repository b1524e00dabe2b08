package veeam_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// TestStopsSource checks which failures tell the poller to stop polling the
// source until the operator fixes its credentials.
func TestStopsSource(t *testing.T) {
	tokenAnswer := func(status int, body string) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != veeamtest.TokenPath {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return true
		}
	}
	tests := []struct {
		name       string
		password   string // "" = static token
		fault      veeamtest.Fault
		before     func(w http.ResponseWriter, r *http.Request) bool
		wantStatus int
		wantStops  bool
		wantText   []string // in the error
	}{
		{name: "static 401", fault: veeamtest.Fault{Status: 401}, wantStatus: 401, wantStops: true, wantText: []string{"VEEAM_TOKEN"}},
		{name: "static 403", fault: veeamtest.Fault{Status: 403}, wantStatus: 403, wantStops: true, wantText: []string{"VEEAM_TOKEN"}},
		{name: "static 400", fault: veeamtest.Fault{Status: 400}, wantStatus: 400},
		{name: "static 404", fault: veeamtest.Fault{Status: 404}, wantStatus: 404},
		{name: "static 520 until give up", fault: veeamtest.Fault{Status: 520, Times: 10}, wantStatus: 520},
		{name: "password 401 after the refresh", password: testPassword, fault: veeamtest.Fault{Status: 401, Times: 2}, wantStatus: 401},
		{name: "password 403", password: testPassword, fault: veeamtest.Fault{Status: 403}, wantStatus: 403, wantStops: true},
		{name: "wrong password", password: "wrong-" + testPassword, wantStatus: 400, wantStops: true,
			wantText: []string{"invalid_grant", "VEEAM_USERNAME", "VEEAM_PASSWORD"}},
		{name: "MFA required", password: testPassword, before: tokenAnswer(200, `{"mfa_token":"mfa-abc","token_type":"bearer"}`),
			wantStatus: 200, wantStops: true, wantText: []string{"multi-factor", "API key", "VEEAM_TOKEN"}},
		{name: "MFA refused with 400", password: testPassword, before: tokenAnswer(400, `{"error":"invalid_grant","error_description":"MFA is required for this user."}`),
			wantStatus: 400, wantStops: true, wantText: []string{"multi-factor", "API key", "VEEAM_TOKEN"}},
		{name: "token endpoint 520", password: testPassword, before: tokenAnswer(520, `{"errors":[{"message":"boom","type":"transport","code":520}]}`), wantStatus: 520},
		{name: "token endpoint 429", password: testPassword, before: tokenAnswer(429, `{"errors":[{"message":"slow down","type":"retryableLogical","code":429}]}`), wantStatus: 429},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, genUsers(2)...)
			e.fake.SetPassword(testUser, testPassword)
			e.fake.InjectFault(tc.fault)
			e.rec.before = tc.before
			c := e.client(t, func(c *veeam.Config) {
				c.MaxAttempts = 2
				if tc.password != "" {
					c.Token, c.Username, c.Password = "", testUser, tc.password
				}
			})
			_, err := c.Snapshot(context.Background(), sources.Request{})
			var ae *veeam.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want an *veeam.APIError", err)
			}
			if ae.Status != tc.wantStatus {
				t.Errorf("status %d, want %d (%v)", ae.Status, tc.wantStatus, err)
			}
			if ae.StopsSource() != tc.wantStops {
				t.Errorf("StopsSource() = %v, want %v (%v)", ae.StopsSource(), tc.wantStops, err)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			for _, secret := range []string{testToken, testPassword, "mfa-abc"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}
}

// A zero APIError (built by hand, not by the client) never stops a source.
func TestStopsSourceZero(t *testing.T) {
	for _, status := range []int{400, 401, 429, 520} {
		if (&veeam.APIError{Status: status}).StopsSource() {
			t.Errorf("status %d without context stops the source", status)
		}
	}
	// 403 means the same whatever the credentials: the account may not list users.
	if !(&veeam.APIError{Status: http.StatusForbidden}).StopsSource() {
		t.Error("403 does not stop the source")
	}
}
