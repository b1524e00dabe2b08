package vpp2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
)

// maxConfigBody caps a service configuration answer; Apple's is a few KB.
const maxConfigBody = 1 << 20

// discovery holds what the service configuration said and when.
type discovery struct {
	url      string // GET …/service/config
	fallback string // BaseURL+"/users", used until a configuration is read
	https    bool   // the users URL must then be https too
	ttl      time.Duration

	mu     sync.Mutex
	users  string // "" until read
	readAt time.Time
}

func newDiscovery(confURL, fallback string, ttl time.Duration, https bool) *discovery {
	if ttl <= 0 {
		ttl = DefaultServiceConfigTTL
	}
	return &discovery{url: confURL, fallback: fallback, https: https, ttl: ttl}
}

// usersURL is the URL of Get Users: the one the service configuration
// gives, read afresh once it is older than the TTL. A configuration that
// cannot be read is not fatal (Apple's users URL has not moved in years,
// and a listing that fails says so itself): the URL read before, or
// BaseURL+"/users", is used, and the read is tried again after another
// TTL.
func (c *Client) usersURL(ctx context.Context) string {
	d := c.disc
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.readAt.IsZero() && time.Since(d.readAt) < d.ttl {
		return cmp(d.users, d.fallback)
	}
	d.readAt = time.Now()
	sc, err := c.readServiceConfig(ctx)
	if err != nil && ctx.Err() != nil {
		d.readAt = time.Time{} // not the service's fault: read it next time
		return cmp(d.users, d.fallback)
	}
	if err != nil {
		c.log.WarnContext(ctx, "vpp2 service configuration could not be read; using the users URL known so far",
			"error", err, "retry_in", d.ttl)
		return cmp(d.users, d.fallback)
	}
	if sc.UsersURL != "" {
		if d.users != "" && d.users != sc.UsersURL {
			// The URL itself is not logged: it comes from the server.
			c.log.InfoContext(ctx, "vpp2 users URL changed in the service configuration")
		}
		d.users = sc.UsersURL
	}
	if sc.MaxRequestPerSecond > 0 {
		c.limiter.setRate(float64(sc.MaxRequestPerSecond))
	}
	return cmp(d.users, d.fallback)
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// readServiceConfig GETs the service configuration (it needs no token, so
// none is sent). No error repeats what the server sent.
func (c *Client) readServiceConfig(ctx context.Context) (serviceConfig, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.disc.url, nil)
	if err != nil {
		return serviceConfig{}, errors.New("cannot build the request")
	}
	req.Header.Set("Accept", "application/json")
	release, err := c.acquire(ctx)
	if err != nil {
		return serviceConfig{}, err
	}
	defer release()
	res, err := c.hc.Do(req)
	if err != nil {
		return serviceConfig{}, httpx.StripURL("get service config", err)
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		return serviceConfig{}, fmt.Errorf("get service config: %w", &httpx.StatusError{Code: res.StatusCode})
	}
	raw, err := httpx.ReadBody(res.Body, min(c.maxBody, maxConfigBody))
	if err != nil {
		return serviceConfig{}, fmt.Errorf("read service config: %w", err)
	}
	sc, number, err := decodeServiceConfig(raw)
	switch {
	case err != nil:
		return serviceConfig{}, fmt.Errorf("%w: %w", ErrServiceConfig, err)
	case number != 0:
		return serviceConfig{}, fmt.Errorf("%w: vpp2 error %d", ErrServiceConfig, number)
	}
	if sc.UsersURL != "" {
		if err := c.checkUsersURL(sc.UsersURL); err != nil {
			return serviceConfig{}, err
		}
	}
	return sc, nil
}

// checkUsersURL refuses a users URL that is not http(s), or is http
// although the base URL is https: the sToken must never be downgraded to
// clear text.
func (c *Client) checkUsersURL(s string) error {
	u, err := url.Parse(strings.TrimSpace(s))
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%w: urls.getUsers is not an http(s) URL", ErrServiceConfig)
	case c.disc.https && u.Scheme != "https":
		return fmt.Errorf("%w: urls.getUsers is not https although VPP2_BASE_URL is", ErrServiceConfig)
	case u.RawQuery != "":
		return fmt.Errorf("%w: urls.getUsers has a query", ErrServiceConfig)
	}
	return nil
}

// limiter spaces requests evenly at the service's maxRequestPerSecond.
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	next  time.Time
}

func newLimiter(rps float64) *limiter {
	l := &limiter{}
	l.setRate(rps)
	return l
}

func (l *limiter) setRate(rps float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.every = time.Duration(float64(time.Second) / rps)
}

// wait returns when the next request may go, or when ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	at := l.next
	if at.Before(now) {
		at = now
	}
	l.next = at.Add(l.every)
	l.mu.Unlock()
	return httpx.Sleep(ctx, at.Sub(now))
}
