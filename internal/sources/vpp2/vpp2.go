// Package vpp2 is rollcall's client for Apple's App and Book Management
// API v2 (GET /mdm/v2/users), the successor of the legacy getVPPUsersSrv
// that package vpp speaks (SPEC §1.4).
//
// A full listing walks pageIndex 0 → nextPageIndex until Apple sends no
// nextPageIndex; the versionId of page 0 is the cursor, and a versionId
// that changes during the walk starts it again (bounded): absence is
// judged on the listing, so it must be one consistent listing. An
// incremental listing sends sinceVersionId, is paged the same way, and is
// never complete; Apple's 9721 (version id no longer valid) makes it a
// full one.
//
// v2 has no Apple user id: users are keyed by clientUserId, and one key
// may have any number of Retired (or legacy Deleted) entries and at most
// one active (Registered or Associated) entry. A key's state is its active
// entry if it has one, else a retired one (see merge.go). A key an
// incremental listing shows only retired is looked up with
// GET /users?clientUserId=…, because a modified retired entry may be an
// old duplicate of a user that is still active.
//
// Every body is read for errorNumber, whatever its HTTP status: Apple
// answers some errors with 200, and an error is never an empty directory.
// The service configuration (GET /mdm/v2/service/config, re-read every
// five minutes) gives the users URL and limits.maxRequestPerSecond, which
// the client keeps to; at most MaxInFlight requests are in flight.
//
// The sToken is a secret: it only travels in the Authorization header,
// and no error or log line of this package contains it.
package vpp2

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/redact"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/pkg/events"
)

// Defaults for Config.
const (
	DefaultBaseURL      = "https://vpp.itunes.apple.com/mdm/v2"
	DefaultMaxBodyBytes = 64 << 20
	DefaultMaxAttempts  = 6
	DefaultTimeout      = 30 * time.Second
	// DefaultServiceConfigTTL: Apple asks clients to re-read the service
	// configuration every five minutes.
	DefaultServiceConfigTTL = 5 * time.Minute
	// DefaultMaxRequestsPerSecond is kept to until the service
	// configuration says otherwise (Apple's example says 15).
	DefaultMaxRequestsPerSecond = 10
	// MaxInFlight: Apple allows no more than five page requests in
	// parallel.
	MaxInFlight = 5
	// DefaultMaxRestarts bounds how often a walk starts again (versionId
	// changed, 9650) before the run fails.
	DefaultMaxRestarts = 3
	// DefaultMaxPages caps one walk whatever totalPages says: at the
	// several hundred users Apple puts on a page, millions of users.
	DefaultMaxPages = 20000
	// DefaultMaxRetiredLookups bounds the keys an incremental run looks up
	// because it shows them only retired; with more, the run becomes a
	// full listing, which settles every key at once.
	DefaultMaxRetiredLookups = 25
)

// Config configures a Client.
type Config struct {
	Name    string // source name, e.g. "school"
	BaseURL string // default DefaultBaseURL; users are at BaseURL+"/users"
	SToken  string // secret
	// ServiceConfigURL is GET …/service/config; default
	// BaseURL+"/service/config". Its urls.getUsers replaces
	// BaseURL+"/users" and its limits.maxRequestPerSecond paces requests.
	// An unreadable configuration is not fatal: the client falls back to
	// BaseURL+"/users" and DefaultMaxRequestsPerSecond, and tries again
	// after ServiceConfigTTL.
	ServiceConfigURL string
	ServiceConfigTTL time.Duration
	HTTPClient       *http.Client
	MaxBodyBytes     int64
	// MaxAttempts bounds the attempts of one request that fails with
	// anything retryable (default DefaultMaxAttempts).
	MaxAttempts       int
	Backoff           httpx.Backoff
	MaxRestarts       int // default DefaultMaxRestarts; negative: none
	MaxPages          int // default DefaultMaxPages
	MaxRetiredLookups int // default DefaultMaxRetiredLookups; negative: none
	// MaxRequestsPerSecond overrides DefaultMaxRequestsPerSecond while the
	// service configuration gives no limit (tests).
	MaxRequestsPerSecond float64
	Logger               *slog.Logger
	Observer             httpx.Observer
}

// Client lists the users of one location through API v2. It is safe for
// concurrent use.
type Client struct {
	name     string
	base     string
	sToken   string
	redactor *redact.Redactor
	token    vpp.TokenInfo
	tokenOK  bool
	hc       *http.Client
	maxBody  int64
	attempts int
	backoff  httpx.Backoff
	restarts int
	maxPages int
	lookups  int
	log      *slog.Logger
	obs      httpx.Observer

	disc     *discovery
	limiter  *limiter
	inFlight chan struct{}
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if !events.ValidSourceName(cfg.Name) {
		return nil, fmt.Errorf("vpp2: invalid source name %q", cfg.Name)
	}
	base := strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	if base == "" {
		base = DefaultBaseURL
	}
	if !httpURL(base) {
		return nil, &sources.SettingError{Setting: "VPP2_BASE_URL", Value: base, Err: fmt.Errorf("not an http(s) URL")}
	}
	confURL := strings.TrimSpace(cfg.ServiceConfigURL)
	if confURL == "" {
		confURL = base + "/service/config"
	} else if !httpURL(confURL) {
		return nil, &sources.SettingError{Setting: "VPP2_SERVICE_CONFIG_URL", Value: confURL, Err: fmt.Errorf("not an http(s) URL")}
	}
	tok := strings.TrimSpace(cfg.SToken)
	if tok == "" {
		return nil, &sources.SettingError{Setting: "VPP2_STOKEN", Err: fmt.Errorf("empty")}
	}
	if strings.ContainsAny(tok, "\r\n\x00") {
		// It goes into a header; the value is not repeated.
		return nil, &sources.SettingError{Setting: "VPP2_STOKEN", Err: fmt.Errorf("holds a line break or NUL")}
	}
	info, terr := vpp.DecodeSToken(tok)
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc.Timeout = DefaultTimeout
	}
	// A redirect would resend the Authorization header to a host nobody
	// configured.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{
		name:     cfg.Name,
		base:     base,
		sToken:   tok,
		redactor: redact.New(tok, vpp.InnerToken(tok)).WithMarker("[sToken]"),
		token:    info,
		tokenOK:  terr == nil,
		hc:       httpx.Observe(&hc, cfg.Observer),
		maxBody:  cfg.MaxBodyBytes,
		attempts: cfg.MaxAttempts,
		backoff:  cfg.Backoff,
		restarts: cfg.MaxRestarts,
		maxPages: cfg.MaxPages,
		lookups:  cfg.MaxRetiredLookups,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		inFlight: make(chan struct{}, MaxInFlight),
	}
	if !c.tokenOK {
		c.token = vpp.TokenInfo{}
	}
	c.defaults()
	rps := cfg.MaxRequestsPerSecond
	if rps <= 0 {
		rps = DefaultMaxRequestsPerSecond
	}
	c.limiter = newLimiter(rps)
	c.disc = newDiscovery(confURL, base+"/users", cfg.ServiceConfigTTL, strings.HasPrefix(base, "https:"))
	return c, nil
}

func (c *Client) defaults() {
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.attempts <= 0 {
		c.attempts = DefaultMaxAttempts
	}
	switch {
	case c.restarts == 0:
		c.restarts = DefaultMaxRestarts
	case c.restarts < 0:
		c.restarts = 0
	}
	if c.maxPages <= 0 {
		c.maxPages = DefaultMaxPages
	}
	switch {
	case c.lookups == 0:
		c.lookups = DefaultMaxRetiredLookups
	case c.lookups < 0:
		c.lookups = 0
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("source", c.name)
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Name is the source name.
func (c *Client) Name() string { return c.name }

// Kind is events.KindVPP2.
func (c *Client) Kind() string { return events.KindVPP2 }

// TokenInfo returns the organisation and expiry the sToken carries; ok is
// false when it does not decode (Apple, not this client, decides whether
// a token is valid).
func (c *Client) TokenInfo() (vpp.TokenInfo, bool) { return c.token, c.tokenOK }

// TokenExpiry is the sToken's expiry, for the poller's metric and its
// warning 30 days ahead.
func (c *Client) TokenExpiry() (time.Time, bool) {
	return c.token.ExpDate, c.tokenOK && !c.token.ExpDate.IsZero()
}

// Snapshot is Stream into a sources.Collector.
func (c *Client) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	var all sources.Collector
	snap, err := c.Stream(ctx, req, &all)
	if err != nil {
		return sources.Snapshot{}, err
	}
	snap.Users = all.Users
	return snap, nil
}

// scrub makes a server's error message safe to quote.
func (c *Client) scrub(msg string) string { return c.redactor.Excerpt(msg, MessageLimit) }
