package natsutil

import (
	"strings"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/redact"
)

// redactor removes a connection's secrets (the password, and a password or
// token in NATS_URL's userinfo, in every spelling redact.New knows) from
// what is logged or returned: nats.go and net/url quote a URL they cannot
// use as it was given, userinfo included.
type redactor struct{ r *redact.Redactor }

func newRedactor(cfg ClientConfig) redactor {
	secrets := []string{cfg.Password}
	for _, u := range strings.Split(cfg.URL, ",") {
		secrets = append(secrets, userinfoSecret(strings.TrimSpace(u)))
	}
	return redactor{redact.New(secrets...).WithMarker("REDACTED")}
}

func (r redactor) str(s string) string { return r.r.String(s) }

// err returns err with its message redacted; see redact.Redactor.Err.
func (r redactor) err(err error) error { return r.r.Err(err) }

// userinfoSecret is the password of a URL's userinfo, or the whole userinfo
// when it has no password (nats://TOKEN@host is token authentication).
// It does not parse the URL, so that it works on URLs url.Parse rejects.
func userinfoSecret(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	info := rest[:at]
	if _, pass, ok := strings.Cut(info, ":"); ok {
		return pass
	}
	return info
}

// throttle lets a repeated message through once per period, and a new one
// at once.
type throttle struct {
	every time.Duration
	mu    sync.Mutex
	last  string
	at    time.Time
}

func (t *throttle) allow(msg string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if msg == t.last && now.Sub(t.at) < t.every {
		return false
	}
	t.last, t.at = msg, now
	return true
}
