package vpp

import (
	"bytes"
	"context"
	"encoding/json"
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

// ErrServiceConfig is wrapped by errors about the service configuration
// (VPPServiceConfigSrv) that retrying will not fix: an answer that is not
// JSON or has no usable getUsersSrvUrl.
var ErrServiceConfig = errors.New("unusable VPPServiceConfigSrv answer")

// maxConfigBody caps a VPPServiceConfigSrv answer; Apple's is a few KB.
const maxConfigBody = 1 << 20

// discovery holds what VPPServiceConfigSrv said and when.
type discovery struct {
	url   string // VPPServiceConfigSrv
	https bool   // then getUsersSrvUrl must be https too
	ttl   time.Duration
	now   func() time.Time

	// lock is held, context-aware, by the one caller reading the
	// configuration; the others wait for its result.
	lock chan struct{}

	mu       sync.Mutex
	usersURL string // getUsersSrvUrl; "" = read the configuration first
	readAt   time.Time
}

func newDiscovery(rawURL string, ttl time.Duration) (*discovery, error) {
	s := strings.TrimSpace(rawURL)
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("service configuration URL %q is not an http(s) URL", rawURL)
	}
	if ttl <= 0 {
		ttl = DefaultServiceConfigTTL
	}
	return &discovery{url: s, https: u.Scheme == "https", ttl: ttl, now: time.Now, lock: make(chan struct{}, 1)}, nil
}

// cached returns the getUsersSrvUrl at hand and whether it is younger than
// the TTL.
func (d *discovery) cached() (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usersURL, d.usersURL != "" && d.now().Sub(d.readAt) < d.ttl
}

// invalidate forgets used, the URL that answered 9617, unless another
// request has replaced it already.
func (d *discovery) invalidate(used string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.usersURL == used {
		d.usersURL = ""
	}
}

// usersEndpoint returns the URL for getVPPUsersSrv requests. With discovery
// it reads the service configuration first when there is no URL yet or the
// one at hand is older than the TTL. A failed re-read keeps the old URL
// (9617 says when it is wrong) and is tried again after another TTL; a
// failed first read is an error, retryable when the failure is.
func (c *Client) usersEndpoint(ctx context.Context, batch int) (string, time.Duration, error) {
	d := c.disc
	if d == nil {
		return c.endpoint, 0, nil
	}
	if u, fresh := d.cached(); fresh {
		return u, 0, nil
	}
	select {
	case d.lock <- struct{}{}:
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
	defer func() { <-d.lock }()
	cached, fresh := d.cached()
	if fresh { // read by another request while this one waited
		return cached, 0, nil
	}
	u, floor, err := c.readServiceConfig(ctx, batch)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if cached == "" || ctx.Err() != nil {
			return "", floor, err
		}
		d.readAt = d.now()
		c.log.WarnContext(ctx, "vpp service configuration could not be re-read, keeping the getVPPUsersSrv URL read before", "error", err)
		return cached, 0, nil
	}
	switch {
	case d.usersURL == "" && !d.readAt.IsZero():
		c.log.InfoContext(ctx, "vpp service configuration re-read after a moved URL", "changed", cached != u)
	case d.usersURL != "" && d.usersURL != u:
		// The URL itself is not logged: it comes from the server.
		c.log.InfoContext(ctx, "vpp getVPPUsersSrv URL changed in the service configuration")
	}
	d.usersURL, d.readAt = u, d.now()
	return u, 0, nil
}

// serviceConfig is the part of a VPPServiceConfigSrv answer rollcall uses;
// the other service URLs, errorCodes[] and limits are not needed to list
// users.
type serviceConfig struct {
	Status         flexInt `json:"status"`
	ErrorNumber    flexInt `json:"errorNumber"`
	GetUsersSrvURL string  `json:"getUsersSrvUrl"`
}

// readServiceConfig POSTs {} to VPPServiceConfigSrv and returns its
// getUsersSrvUrl. Like do, it returns a retryable failure as retryError with
// the server's Retry-After. No error repeats anything the server sent: the
// answer carries URLs that are nobody's business in a log.
func (c *Client) readServiceConfig(ctx context.Context, batch int) (string, time.Duration, error) {
	fail := func(err error) error {
		return fmt.Errorf("source %s: batch %d: read VPPServiceConfigSrv: %w", c.name, batch, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.disc.url, strings.NewReader("{}"))
	if err != nil {
		return "", 0, fail(errors.New("cannot build the request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return "", 0, retryError{httpx.StripURL("post VPPServiceConfigSrv", err)}
	}
	defer res.Body.Close()
	floor, _ := httpx.RetryAfter(res.Header, time.Now())
	if res.StatusCode < 200 || res.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		se := &httpx.StatusError{Code: res.StatusCode, RetryAfter: floor}
		if httpx.Classify(res.StatusCode) == httpx.Retry || (res.StatusCode >= 300 && res.StatusCode < 400) {
			return "", floor, retryError{fmt.Errorf("post VPPServiceConfigSrv: %w", se)}
		}
		return "", 0, fail(se)
	}
	raw, err := httpx.ReadBody(res.Body, min(c.maxBody, maxConfigBody))
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return "", 0, fail(err)
		}
		return "", floor, retryError{&httpx.TransportError{Op: "read VPPServiceConfigSrv response", Err: err}}
	}
	var sc serviceConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&sc); err != nil {
		return "", 0, fail(fmt.Errorf("%w: %w", ErrServiceConfig, describeJSONError(err)))
	}
	switch sc.Status {
	case 0:
	case -1:
		// The server's errorMessage is left out with the rest of the body;
		// the number says what happened.
		ae := &APIError{Number: int(sc.ErrorNumber)}
		if ae.retryable() {
			return "", floor, retryError{fmt.Errorf("VPPServiceConfigSrv: %w", ae)}
		}
		return "", 0, fail(ae)
	default:
		return "", 0, fail(fmt.Errorf("%w: unknown status %d", ErrServiceConfig, sc.Status))
	}
	s := strings.TrimSpace(sc.GetUsersSrvURL)
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "", 0, fail(fmt.Errorf("%w: no getUsersSrvUrl", ErrServiceConfig))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", 0, fail(fmt.Errorf("%w: getUsersSrvUrl is not an http(s) URL", ErrServiceConfig))
	case c.disc.https && u.Scheme != "https":
		// The sToken travels in the body: never downgrade to clear text.
		return "", 0, fail(fmt.Errorf("%w: getUsersSrvUrl is not https although the service configuration is", ErrServiceConfig))
	}
	return s, 0, nil
}
