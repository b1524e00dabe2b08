package web

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Access says who may use the console. A configured login (Htpasswd, or
// ProxyHeader with TrustedProxies) is required of every request, whatever
// the address: a console on loopback is often reached through a reverse
// proxy on the same machine, which forwards everyone's requests from
// 127.0.0.1. Only when no login is configured does Loopback let every
// request in (whoever can reach it is on the machine). With a login, a
// request needs a user from Htpasswd (HTTP Basic, checked against bcrypt
// hashes) or, from an address in TrustedProxies, the user name the proxy
// put in ProxyHeader.
type Access struct {
	Loopback       bool
	Htpasswd       map[string][]byte // user → bcrypt hash
	ProxyHeader    string            // e.g. X-Forwarded-User
	TrustedProxies []netip.Prefix
}

// ErrNoLogin refuses a console on a non-loopback address with no way to
// log in.
var ErrNoLogin = errors.New("the console listens beyond this machine but no login is configured")

// Check refuses an Access that would serve everyone on the network.
func (a Access) Check() error {
	if a.Loopback || a.LoginConfigured() {
		return nil
	}
	return ErrNoLogin
}

// LoginConfigured reports whether a login is configured: then every
// request needs one, on loopback too.
func (a Access) LoginConfigured() bool {
	return len(a.Htpasswd) > 0 || a.ProxyHeader != "" && len(a.TrustedProxies) > 0
}

// IsLoopback reports whether addr (host:port) listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// LoadHtpasswd reads an htpasswd-style file of user:bcrypt-hash lines
// (htpasswd -B, or any bcrypt hash: $2a$, $2b$, $2y$). Blank lines and #
// comments are skipped; any other hash is refused, naming the line.
func LoadHtpasswd(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	defer f.Close()
	out := map[string][]byte{}
	lineOf := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd %s: line %d is not user:hash", path, n)
		}
		// bcrypt.Cost reads only the hash's start: one cut short, or
		// with a field after it, would be loaded and never let in.
		if _, err := bcrypt.Cost([]byte(hash)); err != nil || len(hash) != bcryptLen {
			return nil, fmt.Errorf("htpasswd %s: line %d (user %s): not a bcrypt hash of %d characters (make one with htpasswd -B)", path, n, user, bcryptLen)
		}
		if first, dup := lineOf[user]; dup {
			return nil, fmt.Errorf("htpasswd %s: line %d: user %s is on line %d already; keep one", path, n, user, first)
		}
		out[user], lineOf[user] = []byte(hash), n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("htpasswd %s: no users", path)
	}
	return out, nil
}

// bcryptLen is the length of every bcrypt hash ($2y$10$, 53 characters
// of salt and hash).
const bcryptLen = 60

// ParseProxies reads comma-separated addresses or CIDR prefixes.
func ParseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// authenticator checks requests against an Access. A password that
// passed bcrypt is remembered (its SHA-256) for a few minutes: bcrypt is
// slow on purpose, and a browser sends Basic credentials with every
// request.
type authenticator struct {
	a  Access
	mu sync.Mutex
	ok map[[32]byte]time.Time
	// dummy is a bcrypt hash of a random password at the cost the
	// htpasswd file uses: a user who is not in the file is compared
	// against it, so that a failed login takes as long whether the user
	// exists or not, and the time does not tell which names do.
	dummy []byte
}

func newAuthenticator(a Access) (*authenticator, error) {
	au := &authenticator{a: a, ok: map[[32]byte]time.Time{}}
	if len(a.Htpasswd) > 0 {
		pw := make([]byte, 16)
		_, _ = rand.Read(pw)
		h, err := bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(pw)), usualCost(a.Htpasswd))
		if err != nil {
			return nil, fmt.Errorf("console login: make the comparison hash for unknown users: %w", err)
		}
		au.dummy = h
	}
	return au, nil
}

// usualCost is the bcrypt cost most of the hashes have (the higher one
// on a tie), which an unknown user's comparison then costs too.
func usualCost(users map[string][]byte) int {
	n := map[int]int{}
	best := bcrypt.DefaultCost
	for _, h := range users {
		c, err := bcrypt.Cost(h)
		if err != nil {
			continue
		}
		n[c]++
		if n[c] > n[best] || n[c] == n[best] && c > best {
			best = c
		}
	}
	return best
}

// errHeaderTwice refuses a request whose trusted user header names more
// than one user.
var errHeaderTwice = errors.New("the user header names more than one user")

const passCache = 5 * time.Minute

// user returns who makes r, "" when nobody known. An error refuses the
// request whatever else it carries.
func (au *authenticator) user(r *http.Request) (string, error) {
	if !au.a.LoginConfigured() {
		if au.a.Loopback {
			return "local", nil
		}
		return "", nil
	}
	if au.a.ProxyHeader != "" && au.fromProxy(r) {
		// A proxy that adds its header to one the client sent, instead
		// of replacing it, forwards both, the client's first (Go keeps
		// each line as a value; some proxies join them with a comma).
		// Neither value can be trusted to be the proxy's.
		vals := r.Header.Values(au.a.ProxyHeader)
		if len(vals) > 1 || len(vals) == 1 && strings.Contains(vals[0], ",") {
			return "", errHeaderTwice
		}
		if len(vals) == 1 {
			if u := strings.TrimSpace(vals[0]); u != "" {
				return u, nil
			}
		}
	}
	name, pw, ok := r.BasicAuth()
	if !ok || len(au.a.Htpasswd) == 0 {
		return "", nil
	}
	hash, known := au.a.Htpasswd[name]
	if !known {
		// As long as a wrong password of a known user takes.
		_ = bcrypt.CompareHashAndPassword(au.dummy, []byte(pw))
		return "", nil
	}
	key := sha256.Sum256([]byte(name + "\x00" + pw))
	au.mu.Lock()
	until, cached := au.ok[key]
	au.mu.Unlock()
	if cached && time.Now().Before(until) {
		return name, nil
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil {
		return "", nil
	}
	au.mu.Lock()
	if len(au.ok) > 1000 {
		clear(au.ok)
	}
	au.ok[key] = time.Now().Add(passCache)
	au.mu.Unlock()
	return name, nil
}

func (au *authenticator) fromProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range au.a.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// csrf makes and checks the token every form that changes something
// carries: an HMAC of the user under a key made at start. A page of
// another site cannot read it, so it cannot forge the POST; the
// cross-origin check (http.CrossOriginProtection) refuses such a POST
// earlier still in every current browser.
type csrf struct{ key []byte }

func newCSRF() csrf {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return csrf{key: k}
}

func (c csrf) token(user string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}

func (c csrf) valid(user, tok string) bool {
	return hmac.Equal([]byte(c.token(user)), []byte(tok))
}
