package vpp

import (
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
// JSON or has no usable getUsersSrvUrl (or, for LookupUser, getUserSrvUrl).
var ErrServiceConfig = errors.New("unusable VPPServiceConfigSrv answer")

// maxConfigBody caps a VPPServiceConfigSrv answer; Apple's is a few KB.
const maxConfigBody = 1 << 20

// service is one of the VPP services the client calls.
type service int

const (
	usersService service = iota // getVPPUsersSrv: the batched listing
	userService                 // getVPPUserSrv: one user, to confirm an absence
)

// String is Apple's name of the service, which is also the last element of
// its URL under BaseURL.
func (s service) String() string {
	if s == userService {
		return "getVPPUserSrv"
	}
	return "getVPPUsersSrv"
}

// serviceURLs is what rollcall takes from a VPPServiceConfigSrv answer.
type serviceURLs struct {
	users string // getUsersSrvUrl; "" = read the configuration first
	user  string // getUserSrvUrl; "" when the answer had no usable one
	// userErr says why user is empty. Listing does not need getUserSrvUrl,
	// so only a lookup fails for it.
	userErr error
}

// discovery holds what VPPServiceConfigSrv said and when.
type discovery struct {
	url   string // VPPServiceConfigSrv
	https bool   // then the service URLs must be https too
	ttl   time.Duration
	now   func() time.Time

	// lock is held, context-aware, by the one caller reading the
	// configuration; the others wait for its result.
	lock chan struct{}

	mu     sync.Mutex
	urls   serviceURLs
	readAt time.Time
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

// cached returns the service URLs at hand and whether they are younger than
// the TTL.
func (d *discovery) cached() (serviceURLs, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.urls, d.urls.users != "" && d.now().Sub(d.readAt) < d.ttl
}

// invalidate forgets the configuration when used, the URL that answered
// 9617, came from it, unless another request has replaced it already. Both
// URLs come from one answer: when one has moved, the other may have too.
func (d *discovery) invalidate(used string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.urls.users == used || (d.urls.user != "" && d.urls.user == used) {
		d.urls = serviceURLs{}
	}
}

// endpoint returns the URL for a request to svc: BaseURL plus the service's
// name without discovery, otherwise the URL the service configuration
// gives. where ("batch 3", "lookup of user 42") goes into errors.
func (c *Client) endpoint(ctx context.Context, svc service, where string) (string, time.Duration, error) {
	if c.disc == nil {
		return c.base + "/" + svc.String(), 0, nil
	}
	urls, floor, err := c.discover(ctx, where)
	if err != nil {
		return "", floor, err
	}
	if svc == userService {
		if urls.user == "" {
			return "", 0, fmt.Errorf("source %s: %s: read VPPServiceConfigSrv: %w", c.name, where, urls.userErr)
		}
		return urls.user, 0, nil
	}
	return urls.users, 0, nil
}

// discover returns the service URLs. It reads the service configuration
// first when there are none yet or the ones at hand are older than the TTL.
// A failed re-read keeps the old URLs (9617 says when they are wrong) and is
// tried again after another TTL; a failed first read is an error, retryable
// when the failure is.
func (c *Client) discover(ctx context.Context, where string) (serviceURLs, time.Duration, error) {
	d := c.disc
	if u, fresh := d.cached(); fresh {
		return u, 0, nil
	}
	select {
	case d.lock <- struct{}{}:
	case <-ctx.Done():
		return serviceURLs{}, 0, ctx.Err()
	}
	defer func() { <-d.lock }()
	cached, fresh := d.cached()
	if fresh { // read by another request while this one waited
		return cached, 0, nil
	}
	u, floor, err := c.readServiceConfig(ctx, where)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if cached.users == "" || ctx.Err() != nil {
			return serviceURLs{}, floor, err
		}
		d.readAt = d.now()
		c.log.WarnContext(ctx, "vpp service configuration could not be re-read, keeping the service URLs read before", "error", err)
		return cached, 0, nil
	}
	switch {
	case d.urls.users == "" && !d.readAt.IsZero():
		c.log.InfoContext(ctx, "vpp service configuration re-read after a moved URL", "changed", cached != u)
	case d.urls.users != "" && d.urls != u:
		// The URLs themselves are not logged: they come from the server.
		c.log.InfoContext(ctx, "vpp service URLs changed in the service configuration")
	}
	d.urls, d.readAt = u, d.now()
	return u, 0, nil
}

// serviceConfig is the part of a VPPServiceConfigSrv answer rollcall uses;
// the other service URLs, errorCodes[] and limits are not needed.
// getUserSrvUrl stays raw so that a malformed one fails lookups only, not
// the listing.
type serviceConfig struct {
	Status         flexInt         `json:"status"`
	ErrorNumber    flexInt         `json:"errorNumber"`
	GetUsersSrvURL string          `json:"getUsersSrvUrl"`
	GetUserSrvURL  json.RawMessage `json:"getUserSrvUrl"`
}

// readServiceConfig POSTs {} to VPPServiceConfigSrv and returns its service
// URLs. Like do, it returns a retryable failure as retryError with the
// server's Retry-After. No error repeats anything the server sent: the
// answer carries URLs that are nobody's business in a log.
func (c *Client) readServiceConfig(ctx context.Context, where string) (serviceURLs, time.Duration, error) {
	fail := func(err error) error {
		return fmt.Errorf("source %s: %s: read VPPServiceConfigSrv: %w", c.name, where, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.disc.url, strings.NewReader("{}"))
	if err != nil {
		return serviceURLs{}, 0, fail(errors.New("cannot build the request"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return serviceURLs{}, 0, retryError{httpx.StripURL("post VPPServiceConfigSrv", err)}
	}
	defer res.Body.Close()
	floor, _ := httpx.RetryAfter(res.Header, time.Now())
	if res.StatusCode < 200 || res.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		se := &httpx.StatusError{Code: res.StatusCode, RetryAfter: floor}
		if httpx.Classify(res.StatusCode) == httpx.Retry || (res.StatusCode >= 300 && res.StatusCode < 400) {
			return serviceURLs{}, floor, retryError{fmt.Errorf("post VPPServiceConfigSrv: %w", se)}
		}
		return serviceURLs{}, 0, fail(se)
	}
	raw, err := httpx.ReadBody(res.Body, min(c.maxBody, maxConfigBody))
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return serviceURLs{}, 0, fail(err)
		}
		return serviceURLs{}, floor, retryError{&httpx.TransportError{Op: "read VPPServiceConfigSrv response", Err: err}}
	}
	urls, floor, err := c.serviceURLs(raw, floor)
	if err != nil {
		var retry retryError
		if errors.As(err, &retry) {
			return serviceURLs{}, floor, err
		}
		return serviceURLs{}, 0, fail(err)
	}
	return urls, 0, nil
}

// serviceURLs decodes a 2xx VPPServiceConfigSrv answer.
func (c *Client) serviceURLs(raw []byte, floor time.Duration) (serviceURLs, time.Duration, error) {
	var sc serviceConfig
	// Unmarshal, not a Decoder: data after the JSON value is malformed too.
	if err := json.Unmarshal(raw, &sc); err != nil {
		return serviceURLs{}, 0, fmt.Errorf("%w: %w", ErrServiceConfig, describeJSONError(err))
	}
	switch sc.Status {
	case 0:
	case -1:
		// The server's errorMessage is left out with the rest of the body;
		// the number says what happened.
		ae := &APIError{Number: int(sc.ErrorNumber)}
		if ae.retryable() {
			return serviceURLs{}, floor, retryError{fmt.Errorf("VPPServiceConfigSrv: %w", ae)}
		}
		return serviceURLs{}, 0, ae
	default:
		return serviceURLs{}, 0, fmt.Errorf("%w: unknown status %d", ErrServiceConfig, sc.Status)
	}
	users, err := c.serviceURL("getUsersSrvUrl", sc.GetUsersSrvURL)
	if err != nil {
		return serviceURLs{}, 0, err
	}
	urls := serviceURLs{users: users}
	var user string
	if err := decodeString(sc.GetUserSrvURL, &user); err != nil {
		urls.userErr = fmt.Errorf("%w: getUserSrvUrl: %w", ErrServiceConfig, err)
	} else {
		urls.user, urls.userErr = c.serviceURL("getUserSrvUrl", user)
	}
	return urls, 0, nil
}

// serviceURL checks one service URL of the configuration.
func (c *Client) serviceURL(field, raw string) (string, error) {
	s := strings.TrimSpace(raw)
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "", fmt.Errorf("%w: no %s", ErrServiceConfig, field)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", fmt.Errorf("%w: %s is not an http(s) URL", ErrServiceConfig, field)
	case c.disc.https && u.Scheme != "https":
		// The sToken travels in the body: never downgrade to clear text.
		return "", fmt.Errorf("%w: %s is not https although the service configuration is", ErrServiceConfig, field)
	}
	return s, nil
}
