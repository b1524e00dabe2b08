package veeam

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/rollcall/rollcall/internal/httpx"
)

// Credentials the fuzzed servers may echo back.
const (
	fuzzKey      = "fuzz-api-key-0123456789abcdef"
	fuzzPassword = "fuzz-password-0123456789abcdef"
)

// quotable fails unless the text of err can be logged and shown in /readyz
// as it is: no credential, no control character, a bounded length.
func quotable(t *testing.T, err error, secrets ...string) {
	t.Helper()
	msg := err.Error()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Fatalf("error repeats a credential: %q", msg)
		}
	}
	if len(msg) > 2048 {
		t.Fatalf("error of %d bytes: %.300q…", len(msg), msg)
	}
	for _, r := range msg {
		if unicode.IsControl(r) {
			t.Fatalf("error has control character %q: %q", r, msg)
		}
	}
}

// FuzzAPIError: whatever a failed request answers (status, Retry-After
// header, body), the APIError built from it keeps the status, never asks
// for a negative wait nor for less than the server's retryAfter, and its
// text holds no credential or control character and is bounded.
func FuzzAPIError(f *testing.F) {
	for _, s := range []struct {
		status int
		after  string
		body   string
	}{
		{401, "", `{"errors":[{"message":"Unauthorized","type":"security","code":401}]}`},
		{429, "3", `{"errors":[{"message":"slow down","type":"retryableLogical","code":"429","retryAfter":5}]}`},
		{520, "Wed, 21 Oct 2015 07:28:00 GMT", `{"errors":[{"message":"key ` + fuzzKey + ` refused\u001b[2J","type":"transport","code":null,"retryAfter":1e10}]}`},
		{403, "", `{"errors":[{"message":"` + strings.Repeat("x", 5000) + `","type":"` + strings.Repeat("t", 500) + `","code":[1,2]}]}`},
		{400, "-1", `{"error":"invalid_grant","error_description":"bad password ` + fuzzPassword + `"}`},
		{202, "", `{}`},
		{500, "", "<html>\x00</html>"},
		{429, "", `{"errors":[{"message":"wait","type":"retryableLogical","code":429,"retryAfter":1e10}]}`},
	} {
		f.Add(s.status, s.after, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, after string, body []byte) {
		c, err := New(Config{Name: "veeam", BaseURL: "https://veeam.example", Token: fuzzKey})
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {after}}}
		ae := c.redact(parseAPIError(resp, body))
		if ae.Status != status {
			t.Fatalf("status %d, want %d", ae.Status, status)
		}
		// A wait is never negative, and never shorter than the server
		// asked, up to httpx.MaxSeconds (beyond about 292 years, 9.2e9 s,
		// the conversion overflowed before httpx.Seconds clamped it).
		var env struct {
			Errors []struct {
				RetryAfter json.Number `json:"retryAfter"`
			} `json:"errors"`
		}
		asked := 0.0
		if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
			asked, _ = env.Errors[0].RetryAfter.Float64()
		}
		if ae.retryAfter < 0 || ae.retryAfter > httpx.MaxSeconds {
			t.Fatalf("wait %v out of [0, %v]", ae.retryAfter, httpx.MaxSeconds)
		}
		if asked > 0 && ae.retryAfter < min(httpx.Seconds(asked), httpx.MaxSeconds)-time.Millisecond {
			t.Fatalf("wait %v, shorter than the server's retryAfter %vs", ae.retryAfter, asked)
		}
		quotable(t, ae, fuzzKey)
	})
}

// tokenAnswer is what the fuzzed token endpoint sends.
type tokenAnswer struct {
	status int
	body   []byte
}

// FuzzTokenResponse: whatever POST /api/v3/token answers, logging in never
// panics; it succeeds only on a 200 with an access token, which it then
// uses, and a token whose expires_in is not tiny is not refreshed at once
// (expires_in can be any JSON number); a failure holds no credential or
// control character and is bounded.
func FuzzTokenResponse(f *testing.F) {
	for _, s := range []tokenAnswer{
		{200, []byte(`{"access_token":"a-1","token_type":"bearer","refresh_token":"r-1","expires_in":3600}`)},
		{200, []byte(`{"access_token":"a-1","expires_in":"3600"}`)},
		{200, []byte(`{"access_token":"a-1","expires_in":1e10}`)},
		{200, []byte(`{"access_token":"a-1","expires_in":1e300}`)},
		{200, []byte(`{"access_token":"a-1","expires_in":0.001}`)},
		{200, []byte(`{"mfa_token":"m-1"}`)},
		{200, []byte(`{"access_token":""}`)},
		{200, []byte(`{"access_token":7}`)},
		{200, []byte(`not json ` + fuzzPassword)},
		{400, []byte(`{"error":"invalid_grant","error_description":"wrong password ` + fuzzPassword + "\n\x1b[31m\"}")},
		{400, []byte(`{"error":"mfa_required"}`)},
		{401, []byte(`{"errors":[{"message":"` + strings.Repeat("m", 4000) + `","type":"security","code":401}]}`)},
		{503, nil},
	} {
		f.Add(s.status, s.body)
	}
	var mu sync.Mutex
	var answer tokenAnswer
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != tokenPath {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		a := answer
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(api.Close)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 200 || status > 599 {
			return
		}
		mu.Lock()
		answer = tokenAnswer{status, body}
		mu.Unlock()
		c, err := New(Config{Name: "veeam", BaseURL: api.URL, Username: "poller", Password: fuzzPassword, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bearer, err := c.bearer(ctx)
		if err != nil {
			quotable(t, err, fuzzPassword)
			return
		}
		var tok struct {
			AccessToken string      `json:"access_token"`
			ExpiresIn   json.Number `json:"expires_in"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" || bearer != tok.AccessToken {
			t.Fatalf("logged in with %q from a %d answer %q", bearer, status, body)
		}
		s, err := tok.ExpiresIn.Float64()
		if (err != nil || s <= 0 || s >= 10) && !c.refreshAt.After(time.Now()) {
			t.Fatalf("a token with expires_in %q is due for refresh at once (at %v): every request would log in again", tok.ExpiresIn, c.refreshAt)
		}
	})
}
