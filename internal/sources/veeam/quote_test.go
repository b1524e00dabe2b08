package veeam_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// elsewhere is a server that must never be asked anything: it counts what
// reaches it.
func elsewhere(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// TestRedirectsAreNotFollowed: a redirect of the token endpoint, the listing
// or a lookup is an error naming the status and the target host, not
// retried, and nothing reaches the target.
func TestRedirectsAreNotFollowed(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		on        string // the request redirected: "token", "users" or "lookup"
		password  bool   // log in with a username and password instead of the API key
		otherHost bool   // redirect to localhost (another host) instead of 127.0.0.1 on another port
	}{
		{name: "token 307 to another host", status: 307, on: "token", password: true, otherHost: true},
		{name: "token 308 to another host", status: 308, on: "token", password: true, otherHost: true},
		{name: "token 302 to another port", status: 302, on: "token", password: true},
		{name: "users 302 to another port", status: 302, on: "users"},
		{name: "users 301 to another port", status: 301, on: "users"},
		{name: "users 308 to another port", status: 308, on: "users"},
		{name: "users 307 to another host", status: 307, on: "users", otherHost: true},
		{name: "users 302 with an access token", status: 302, on: "users", password: true},
		{name: "lookup 302 to another port", status: 302, on: "lookup"},
		{name: "lookup 307 with an access token", status: 307, on: "lookup", password: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			other, otherHits := elsewhere(t)
			target, _ := url.Parse(other.URL)
			if tc.otherHost {
				target.Host = "localhost:" + target.Port()
			}
			location := target.String() + "/LOC-SECRET-path?sig=QUERY-SECRET"

			e := newEnv(t, veeamtest.FixtureUsers()...)
			e.fake.SetPassword(testUser, testPassword)
			var redirected atomic.Int32
			e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
				hit := false
				switch tc.on {
				case "token":
					hit = r.URL.Path == veeamtest.TokenPath
				case "users":
					hit = r.URL.Path == veeamtest.UsersPath
				case "lookup":
					hit = strings.HasPrefix(r.URL.Path, veeamtest.UsersPath+"/")
				}
				if !hit {
					return false
				}
				redirected.Add(1)
				w.Header().Set("Location", location)
				w.WriteHeader(tc.status)
				return true
			}
			c := e.client(t, func(c *veeam.Config) {
				if tc.password {
					c.Token, c.Username, c.Password = "", testUser, testPassword
				}
			})
			var err error
			if tc.on == "lookup" {
				var present bool
				present, err = c.LookupUser(context.Background(), veeamtest.FixtureUsers()[0].InstanceUID)
				if present {
					t.Error("LookupUser reported the user present")
				}
			} else {
				_, err = c.Snapshot(context.Background(), sources.Request{})
			}

			if n := otherHits.Load(); n != 0 {
				t.Errorf("the redirect target received %d requests, want none", n)
			}
			if n := redirected.Load(); n != 1 {
				t.Errorf("the redirecting endpoint was asked %d times, want 1 (no retry)", n)
			}
			var re *veeam.RedirectError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *veeam.RedirectError", err)
			}
			if re.Status != tc.status || re.Host != target.Host {
				t.Errorf("RedirectError{Status: %d, Host: %q}, want %d, %q", re.Status, re.Host, tc.status, target.Host)
			}
			msg := err.Error()
			if !strings.Contains(msg, "status "+strconv.Itoa(tc.status)) || !strings.Contains(msg, target.Host) {
				t.Errorf("error %q should name the status %d and the host %s", msg, tc.status, target.Host)
			}
			for _, secret := range []string{testPassword, testToken, "LOC-SECRET", "QUERY-SECRET"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains %q", msg, secret)
				}
			}
		})
	}
}

// huge is a 5 MB API message of terminal escapes and line breaks.
var huge = strings.Repeat("\x1b[31mAccess denied.\x1b[0m\r\n", 5<<20/27)

// controlFree fails t when s holds a control character.
func controlFree(t *testing.T, s string) {
	t.Helper()
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		t.Errorf("control character %q at byte %d of %.120q", s[i], i, s)
	}
}

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAPITextIsCut: a huge API message full of control characters is cut to
// a few hundred bytes of printable text in the error (and in every log line
// of a retry), wherever the client quotes API text.
func TestAPITextIsCut(t *testing.T) {
	envelope := func(message, typ, code string) map[string]any {
		return map[string]any{"errors": []map[string]any{{"message": message, "type": typ, "code": code}}}
	}
	cases := []struct {
		name     string
		path     string // answered with status and body instead of the fake
		status   int
		body     map[string]any
		password bool
		lookup   bool
	}{
		{name: "users 403 message", path: veeamtest.UsersPath, status: 403, body: envelope(huge, "security", "403")},
		{name: "users 400 type and code", path: veeamtest.UsersPath, status: 400, body: envelope("bad", huge, huge)},
		{name: "users 520 message on every retry", path: veeamtest.UsersPath, status: 520, body: envelope(huge, "x", "520")},
		{name: "lookup 500 message", path: veeamtest.UsersPath + "/", status: 500, body: envelope(huge, "x", "500"), lookup: true},
		// The token endpoint reads at most 1 MiB, escapes included.
		{name: "token error_description", path: veeamtest.TokenPath, status: 400, password: true,
			body: map[string]any{"error": "invalid_grant", "error_description": huge[:300<<10]}},
		{name: "token error code", path: veeamtest.TokenPath, status: 400, password: true,
			body: map[string]any{"error": huge[:300<<10], "error_description": "no"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, veeamtest.FixtureUsers()...)
			body := jsonBody(t, tc.body)
			e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != tc.path && !(strings.HasSuffix(tc.path, "/") && strings.HasPrefix(r.URL.Path, tc.path)) {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(body))
				return true
			}
			var logs syncBuffer
			c := e.client(t, func(c *veeam.Config) {
				c.MaxAttempts = 3
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				if tc.password {
					c.Token, c.Username, c.Password = "", testUser, testPassword
				}
			})
			var err error
			if tc.lookup {
				_, err = c.LookupUser(context.Background(), "u-1")
			} else {
				_, err = c.Snapshot(context.Background(), sources.Request{})
			}
			var ae *veeam.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an APIError", err)
			}
			msg := err.Error()
			if len(msg) > 512 {
				t.Errorf("error of %d bytes: %.600q", len(msg), msg)
			}
			for _, field := range []string{ae.Message, ae.Type, ae.Code} {
				if len(field) > veeam.APITextLimit+len("token password: ") {
					t.Errorf("field of %d bytes: %.120q…", len(field), field)
				}
			}
			controlFree(t, msg)
			if !strings.Contains(msg, "Access denied.") || strings.Contains(msg, "[31m") {
				t.Errorf("error %q should keep the text and drop the escape sequences", msg)
			}
			if l := len(logs.String()); l > 4<<10 {
				t.Errorf("%d bytes of logs", l)
			}
			if strings.Contains(logs.String(), "[31m") {
				t.Errorf("escape sequences in the logs:\n%.2000s", logs.String())
			}
		})
	}
}

// TestEscapedSecretsAreRedacted: a server that echoes a credential
// URL-encoded, JSON-escaped or base64-encoded does not get it into an error.
func TestEscapedSecretsAreRedacted(t *testing.T) {
	jsonEscaped := func(s string) string {
		b, _ := json.Marshal(s)
		return strings.Trim(string(b), `"`)
	}
	cases := []struct {
		name, password string
		echo           func(string) string
	}{
		{"password as given", "p@ss+word", func(s string) string { return s }},
		{"password query-escaped", "p@ss+word", url.QueryEscape},
		{"password path-escaped", "p@ss+wo/rd", url.PathEscape},
		{"password json-escaped", `p@ss"wo\rd<&`, jsonEscaped},
		{"password base64", "p@ss+word", func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			echoed := tc.echo(tc.password)
			body := jsonBody(t, map[string]any{"error": "invalid_grant",
				"error_description": fmt.Sprintf("password %s is wrong for %s", echoed, testUser)})
			e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != veeamtest.TokenPath {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(body))
				return true
			}
			c := e.client(t, func(c *veeam.Config) { c.Token, c.Username, c.Password = "", testUser, tc.password })
			_, err := c.Snapshot(context.Background(), sources.Request{})
			var ae *veeam.APIError
			if !errors.As(err, &ae) || !ae.StopsSource() {
				t.Fatalf("err = %v, want a refused login", err)
			}
			if msg := err.Error(); strings.Contains(msg, echoed) || strings.Contains(msg, tc.password) || !strings.Contains(msg, "password [redacted] is wrong") {
				t.Errorf("error %q, want the password redacted", msg)
			}
		})
	}

	// The API key, echoed URL-encoded and JSON-escaped with "/" as `\/`.
	const key = "k+S3CRET/key=="
	for name, echoed := range map[string]string{
		"api key query-escaped":  url.QueryEscape(key),
		"api key slash-escaped":  strings.ReplaceAll(key, "/", `\/`),
		"api key lower-case hex": strings.NewReplacer("%2B", "%2b", "%2F", "%2f", "%3D", "%3d").Replace(url.QueryEscape(key)),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			body := jsonBody(t, map[string]any{"errors": []map[string]any{{"message": "key " + echoed + " is revoked", "type": "security", "code": 401}}})
			e.rec.before = func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(body))
				return true
			}
			c := e.client(t, func(c *veeam.Config) { c.Token = key })
			_, err := c.Snapshot(context.Background(), sources.Request{})
			if err == nil {
				t.Fatal("want an error")
			}
			if msg := err.Error(); strings.Contains(msg, echoed) || strings.Contains(msg, "S3CRET") || !strings.Contains(msg, "key [redacted] is revoked") {
				t.Errorf("error %q, want the key redacted", msg)
			}
		})
	}
}
