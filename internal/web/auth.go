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

// Access says who may use the console. On a loopback address nobody logs
// in (whoever can reach it is on the machine); on any other address every
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
	if a.Loopback || len(a.Htpasswd) > 0 || a.ProxyHeader != "" && len(a.TrustedProxies) > 0 {
		return nil
	}
	return ErrNoLogin
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
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("htpasswd %s: line %d (user %s): not a bcrypt hash (make one with htpasswd -B)", path, n, user)
		}
		out[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("htpasswd %s: no users", path)
	}
	return out, nil
}

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
}

const passCache = 5 * time.Minute

// user returns who makes r, "" when nobody known.
func (au *authenticator) user(r *http.Request) string {
	if au.a.Loopback {
		return "local"
	}
	if au.a.ProxyHeader != "" && au.fromProxy(r) {
		if u := strings.TrimSpace(r.Header.Get(au.a.ProxyHeader)); u != "" {
			return u
		}
	}
	name, pw, ok := r.BasicAuth()
	if !ok {
		return ""
	}
	hash, known := au.a.Htpasswd[name]
	if !known {
		return ""
	}
	key := sha256.Sum256([]byte(name + "\x00" + pw))
	au.mu.Lock()
	until, cached := au.ok[key]
	au.mu.Unlock()
	if cached && time.Now().Before(until) {
		return name
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil {
		return ""
	}
	au.mu.Lock()
	if len(au.ok) > 1000 {
		clear(au.ok)
	}
	au.ok[key] = time.Now().Add(passCache)
	au.mu.Unlock()
	return name
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
