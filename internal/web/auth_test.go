package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestAuthenticatorUser: a configured login is asked of every request,
// on loopback too (a reverse proxy on the same machine forwards everyone
// from 127.0.0.1); loopback lets everyone in only when none is
// configured; a proxy header that names more than one user is refused.
func TestAuthenticatorUser(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string][]byte{"alice": hash}
	proxies, _ := ParseProxies("127.0.0.1")
	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	header := func(vs ...string) func(*http.Request) {
		return func(r *http.Request) {
			for _, v := range vs {
				r.Header.Add("X-Forwarded-User", v)
			}
		}
	}
	cases := []struct {
		name    string
		access  Access
		mod     func(*http.Request)
		want    string
		refused bool
	}{
		{"loopback, no login configured", Access{Loopback: true}, nil, "local", false},
		{"loopback, htpasswd, no credentials", Access{Loopback: true, Htpasswd: users}, nil, "", false},
		{"loopback, htpasswd, wrong password", Access{Loopback: true, Htpasswd: users}, basic("alice", "guess"), "", false},
		{"loopback, htpasswd, unknown user", Access{Loopback: true, Htpasswd: users}, basic("mallory", "s3cret"), "", false},
		{"loopback, htpasswd, alice", Access{Loopback: true, Htpasswd: users}, basic("alice", "s3cret"), "alice", false},
		{"loopback, proxy, no header", Access{Loopback: true, ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}, nil, "", false},
		{"loopback, proxy, header", Access{Loopback: true, ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}, header("bob"), "bob", false},
		{"proxy, header twice", Access{ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}, header("admin", "bob"), "", true},
		{"proxy, header twice with the same value", Access{ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}, header("bob", "bob"), "", true},
		{"proxy, header holding a list", Access{ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}, header("admin, bob"), "", true},
		{"proxy, header twice, htpasswd user too", Access{Htpasswd: users, ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies},
			func(r *http.Request) { header("admin", "bob")(r); basic("alice", "s3cret")(r) }, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			au, err := newAuthenticator(c.access)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/search", nil)
			r.RemoteAddr = "127.0.0.1:40000"
			r.Host = "127.0.0.1" // a loopback console without login answers only to a loopback host (DNS rebinding)
			if c.mod != nil {
				c.mod(r)
			}
			got, err := au.user(r)
			if got != c.want || errors.Is(err, errHeaderTwice) != c.refused {
				t.Errorf("user = %q, %v; want %q, refused %v", got, err, c.want, c.refused)
			}
		})
	}
}

// TestUsualCost: an unknown user is compared at the cost most users' hashes
// have, the higher on a tie.
func TestUsualCost(t *testing.T) {
	hashAt := func(cost int) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte("x"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	cases := []struct {
		name  string
		costs []int
		want  int
	}{
		{"one user", []int{4}, 4},
		{"most at 5", []int{4, 5, 5}, 5},
		{"most at 4", []int{4, 4, 5}, 4},
		{"a tie", []int{4, 5}, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			users := map[string][]byte{}
			for i, cost := range c.costs {
				users[string(rune('a'+i))] = hashAt(cost)
			}
			if got := usualCost(users); got != c.want {
				t.Errorf("usualCost = %d, want %d", got, c.want)
			}
		})
	}
}
