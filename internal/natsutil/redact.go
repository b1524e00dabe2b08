package natsutil

import (
	"errors"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// redactor removes a connection's secrets (the password, and a password or
// token in NATS_URL's userinfo) from what is logged or returned: nats.go and
// net/url quote a URL they cannot use as it was given, userinfo included.
type redactor struct{ secrets []string }

const redacted = "REDACTED"

func newRedactor(cfg ClientConfig) redactor {
	var r redactor
	r.add(cfg.Password)
	for _, u := range strings.Split(cfg.URL, ",") {
		r.add(userinfoSecret(strings.TrimSpace(u)))
	}
	// Longest first, so that no part of a longer form is left behind.
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	return r
}

func (r *redactor) add(s string) {
	if s == "" {
		return
	}
	// As given, and as it looks escaped or unescaped in a URL.
	userinfo := strings.TrimPrefix(url.UserPassword("", s).String(), ":")
	r.secrets = append(r.secrets, s, url.QueryEscape(s), url.PathEscape(s), userinfo)
	if u, err := url.PathUnescape(s); err == nil && u != s {
		r.add(u)
	}
}

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

func (r redactor) str(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// err returns err with its message redacted. errors.Is still sees through
// it; errors.As and Unwrap do not, since the wrapped error (a *url.Error,
// say) would print the secret.
func (r redactor) err(err error) error {
	if err == nil {
		return nil
	}
	msg := r.str(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

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
