// Package veeam reads the user directory of a Veeam Service Provider Console
// (REST API v3) and normalises it to events.User.
//
// Every run is a full listing: the API has no change cursor. Because items
// can move between pages while the directory changes, the client sorts by
// instanceUid, checks the echoed offset, de-duplicates and, when the unique
// count does not match the final total, sweeps again (bounded). A run that
// cannot settle fails rather than reporting a snapshot that would retire
// users who merely moved between pages.
//
// Even a settled sweep is not a consistent snapshot: a user deleted before
// the current offset shifts every later user down a place, so a present user
// can be skipped while the counts still match. Client.LookupUser therefore
// asks GET /api/v3/users/{instanceUid} about a single user, so that the
// poller retires only users whose absence the API confirms with a 404; any
// other failure is an error, never an absence.
package veeam

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/redact"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// API paths below BaseURL.
const (
	usersPath = "/api/v3/users"
	tokenPath = "/api/v3/token"
)

// sortParam asks for a stable order, so that offsets mean the same thing from
// one page to the next.
const sortParam = `[{"property":"instanceUid","direction":"ascending"}]`

// Defaults.
const (
	DefaultPageSize     = 500
	MaxPageSize         = 500
	DefaultMaxBodyBytes = 64 << 20
	DefaultMaxAttempts  = 6
	DefaultMaxSweeps    = 3
	defaultTimeout      = 30 * time.Second
	tokenBodyLimit      = 1 << 20
	// APITextLimit bounds each piece of text an APIError quotes from the
	// server (its message; type and code get codeLimit): the message of a
	// 403 can be megabytes, and the error is logged on every retry and
	// kept in the source's health for /readyz.
	APITextLimit = 300
	codeLimit    = 100
)

// Config configures a Client.
type Config struct {
	Name    string // source name, e.g. "veeam"
	BaseURL string // e.g. https://spc.example.com:1280; users at BaseURL+"/api/v3/users"
	Token   string // static bearer token / API key (secret)
	// Username and Password are the alternative to Token: they are exchanged
	// at POST /api/v3/token (grant_type=password), the access token is
	// refreshed before expiry with grant_type=refresh_token, and a 401 causes
	// one refresh and a retry of the same page.
	Username, Password string
	PageSize           int // default 500, 1–500
	// HTTPClient is the client to use; nil → a client with a 30s timeout
	// over http.DefaultTransport. When CAFile or InsecureSkipVerify is set,
	// New copies the client (or starts from that default) and gives the
	// copy a clone of its *http.Transport (nil → http.DefaultTransport)
	// with the TLS settings applied; the caller's client and transport are
	// never modified, and a transport of any other type is an error,
	// because the settings could not be applied to it.
	HTTPClient *http.Client
	// CAFile (VEEAM_CA_FILE) is a PEM file of CA certificates trusted in
	// addition to the system roots (and to the RootCAs of a given
	// HTTPClient's transport): Veeam servers on port 1280 commonly use
	// self-signed certificates. A missing, unreadable or certificate-less
	// file fails New.
	CAFile string
	// InsecureSkipVerify turns certificate verification off. It exists only
	// as an explicit escape hatch: New and every Snapshot log a warning
	// saying so. It cannot be combined with CAFile.
	InsecureSkipVerify bool
	MaxBodyBytes       int64 // default 64 MiB
	MaxAttempts        int   // per request, default 6
	MaxSweeps          int   // default 3 (paging-drift re-sweeps)
	Backoff            httpx.Backoff
	Logger             *slog.Logger
	Observer           httpx.Observer // nil: none; sees every request and retry
}

// APIError is a failure the API explained in its errors envelope (or, for
// the token endpoint, in its OAuth error body). It never contains a secret:
// every credential the client holds is redacted from the server's text in
// each spelling an echo may take (see redact.New). Message, Type and Code
// are excerpts (redact.Excerpt): without control characters and at most
// APITextLimit bytes each.
type APIError struct {
	Status  int
	Message string
	Type    string
	Code    string
	// retryAfter is the server's requested wait (body retryAfter or
	// Retry-After header, whichever is longer).
	retryAfter time.Duration
	// staticToken: the request carried the configured static token (API
	// key), which no retry or refresh can replace.
	staticToken bool
	// login: POST /api/v3/token refused the username and password (or
	// demanded multi-factor authentication).
	login bool
	// hint tells the operator what to do; appended by Error.
	hint string
	// enveloped: the body was Veeam's errors envelope, so the answer came
	// from the API and not from a proxy or load balancer in front of it.
	enveloped bool
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "veeam api: status %d", e.Status)
	if e.Type != "" || e.Code != "" {
		fmt.Fprintf(&b, " (type %s, code %s)", orDash(e.Type), orDash(e.Code))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.hint != "" {
		b.WriteString("; ")
		b.WriteString(e.hint)
	}
	return b.String()
}

// StopsSource reports whether polling cannot succeed until the operator
// changes the credentials, so that the poller should stop polling this
// source and report it unhealthy instead of retrying every interval:
//   - 401 or 403 for the static token (API key): the key is wrong, revoked
//     or lacks the right to list users;
//   - 403 for a logged-in user: the account lacks the right to list users;
//   - a login refused at POST /api/v3/token (for example 400 invalid_grant
//     for a wrong username or password), or an account that requires
//     multi-factor authentication, which a poller cannot complete.
//
// A 401 for a logged-in user is not among them: the client already
// refreshed once, and another program logging in as the same user can
// revoke a token without the credentials being wrong.
func (e *APIError) StopsSource() bool {
	switch {
	case e.login:
		return true
	case e.Status == http.StatusForbidden:
		return true
	case e.Status == http.StatusUnauthorized:
		return e.staticToken
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errDrift marks a sweep that saw the listing move under it.
var errDrift = errors.New("paging drift")

// RedirectError is a 3xx answer to a request of the client. Redirects are
// never followed, because every request carries a credential (the password
// form, a refresh token or the bearer token) that would go to wherever the
// server points, another host or the same host on another port included. It
// is not retried: a server that redirects once will do so again.
type RedirectError struct {
	Status int
	// Scheme and Host (host[:port]) are where the Location points, resolved
	// against the request; both are empty when the answer has no usable
	// Location. The path and query are left out: they may carry a token.
	Scheme, Host string
}

func (e *RedirectError) Error() string {
	if e.Host == "" {
		return fmt.Sprintf("veeam api: status %d redirect without a usable location, not followed", e.Status)
	}
	return fmt.Sprintf("veeam api: status %d redirect to %s://%s not followed, because the request carries credentials; "+
		"if the server has moved, set VEEAM_BASE_URL to its new address", e.Status, e.Scheme, e.Host)
}

// redirectError describes resp, a 3xx answer.
func (c *Client) redirectError(resp *http.Response) *RedirectError {
	re := &RedirectError{Status: resp.StatusCode}
	re.Scheme, re.Host = httpx.RedirectTarget(resp)
	return re
}

// isRedirect reports a 3xx status.
func isRedirect(status int) bool { return status >= 300 && status < 400 }

// refuseRedirects makes http.Client hand a redirect back instead of
// following it.
func refuseRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Client lists the users of one Veeam Service Provider Console. It is safe
// for concurrent use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	hc       *http.Client
	usersURL string
	tokenURL string

	mu        sync.Mutex // guards the tokens below and serialises token requests
	access    string
	refresh   string
	refreshAt time.Time
}

// New validates cfg, fills defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	if !events.ValidSourceName(cfg.Name) {
		return nil, fmt.Errorf("veeam: invalid source name %q", cfg.Name)
	}
	u, err := url.Parse(cfg.BaseURL)
	if err == nil && u.User != nil {
		// The URL is not repeated: it holds a password.
		return nil, &sources.SettingError{Setting: "VEEAM_BASE_URL", Err: errors.New("must not carry credentials; give them as an API key or a username and password")}
	}
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		value := cfg.BaseURL
		if err != nil || strings.Contains(value, "@") {
			value = "" // it may hold a password
		}
		return nil, &sources.SettingError{Setting: "VEEAM_BASE_URL", Value: value, Err: errors.New("not an absolute http(s) URL, such as https://spc.example.com:1280")}
	}
	switch {
	case cfg.Token != "" && (cfg.Username != "" || cfg.Password != ""):
		return nil, &sources.SettingError{Setting: "VEEAM_TOKEN", Err: errors.New("set together with a username and password: use one, not both")}
	case cfg.Token == "" && (cfg.Username == "" || cfg.Password == ""):
		return nil, &sources.SettingError{Setting: "VEEAM_TOKEN", Err: errors.New("a token or a username and password is required")}
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.PageSize < 1 || cfg.PageSize > MaxPageSize {
		return nil, &sources.SettingError{Setting: "VEEAM_PAGE_SIZE", Value: strconv.Itoa(cfg.PageSize), Err: fmt.Errorf("page size outside 1–%d", MaxPageSize)}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxSweeps <= 0 {
		cfg.MaxSweeps = DefaultMaxSweeps
	}
	hc, err := httpClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("veeam: source %s: %w", cfg.Name, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	c := &Client{
		cfg:      cfg,
		log:      log.With("source", cfg.Name, "kind", events.KindVeeam),
		hc:       httpx.Observe(hc, cfg.Observer),
		usersURL: base + usersPath,
		tokenURL: base + tokenPath,
	}
	if cfg.InsecureSkipVerify {
		c.warnInsecure(context.Background())
	}
	return c, nil
}

// warnInsecure says, as loudly as a log line can, that the server's identity
// is not checked.
func (c *Client) warnInsecure(ctx context.Context) {
	c.log.WarnContext(ctx, "veeam TLS certificate verification is OFF: anyone on the network path can impersonate the server and read the credentials; "+
		"put the server's CA certificate in a PEM file, set VEEAM_CA_FILE to it and turn skipping verification off",
		"insecureSkipVerify", true)
}

// httpClient returns the client New uses: a copy of cfg.HTTPClient (or of
// the default) that follows no redirect and, with a TLS option set, whose
// transport trusts cfg.CAFile or skips verification.
func httpClient(cfg Config) (*http.Client, error) {
	hc, err := tlsClient(cfg)
	if err != nil {
		return nil, err
	}
	cp := *hc
	cp.CheckRedirect = refuseRedirects
	return &cp, nil
}

// tlsClient returns cfg.HTTPClient as given (or the default) when no TLS
// option is set, otherwise a copy whose transport trusts cfg.CAFile or
// skips verification.
func tlsClient(cfg Config) (*http.Client, error) {
	if cfg.CAFile == "" && !cfg.InsecureSkipVerify {
		if cfg.HTTPClient != nil {
			return cfg.HTTPClient, nil
		}
		return &http.Client{Timeout: defaultTimeout}, nil
	}
	if cfg.CAFile != "" && cfg.InsecureSkipVerify {
		return nil, &sources.SettingError{Setting: "VEEAM_CA_FILE", Err: errors.New("set while certificate verification is skipped: choose one (the CA file is the safe choice)")}
	}
	hc := &http.Client{Timeout: defaultTimeout}
	var rt http.RoundTripper = http.DefaultTransport
	if cfg.HTTPClient != nil {
		cp := *cfg.HTTPClient
		hc = &cp
		if hc.Transport != nil {
			rt = hc.Transport
		}
	}
	base, ok := rt.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("cannot apply VEEAM_CA_FILE or skipped verification to an HTTP transport of type %T; configure TLS in that transport instead", rt)
	}
	tr := base.Clone()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if tr.TLSClientConfig != nil {
		tc = tr.TLSClientConfig.Clone()
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
	}
	if cfg.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
	} else {
		pool, err := caPool(cfg.CAFile, tc.RootCAs)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	tr.TLSClientConfig = tc
	hc.Transport = tr
	return hc, nil
}

// caPool returns base (or, when nil, the system roots) plus the PEM
// certificates in file.
func caPool(file string, base *x509.CertPool) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		// The *PathError names the file and the cause.
		return nil, &sources.SettingError{Setting: "VEEAM_CA_FILE", Err: err}
	}
	var pool *x509.CertPool
	if base != nil {
		pool = base.Clone()
	} else if pool, err = x509.SystemCertPool(); err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &sources.SettingError{Setting: "VEEAM_CA_FILE", Value: file, Err: errors.New("holds no PEM certificate")}
	}
	return pool, nil
}

// Name is the source name.
func (c *Client) Name() string { return c.cfg.Name }

// Kind is events.KindVeeam.
func (c *Client) Kind() string { return events.KindVeeam }

// Snapshot lists every user. The listing is always complete (Complete=true,
// Cursor=""); req is accepted for the common source interface and ignored.
func (c *Client) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	var all sources.Collector
	snap, err := c.Stream(ctx, req, &all)
	if err != nil {
		return sources.Snapshot{}, err
	}
	snap.Users = all.Users
	return snap, nil
}

// Stream is Snapshot page by page: each page's users go to out as it
// arrives; a user a later page repeats (the listing moved under the pager)
// goes to out.Replace, and a sweep that starts again says so with
// out.Restart. The Snapshot it returns has no Users.
func (c *Client) Stream(ctx context.Context, req sources.Request, out sources.Pages) (sources.Snapshot, error) {
	if c.cfg.InsecureSkipVerify {
		c.warnInsecure(ctx)
	}
	pages := 0
	var last error
	for sweep := 1; sweep <= c.cfg.MaxSweeps; sweep++ {
		if sweep > 1 {
			out.Restart()
		}
		users, n, err := c.sweep(ctx, sweep, out)
		pages += n
		if err == nil {
			c.log.DebugContext(ctx, "veeam snapshot complete", "users", users, "pages", pages, "sweeps", sweep)
			return sources.Snapshot{Complete: true, Pages: pages}, nil
		}
		if !errors.Is(err, errDrift) {
			return sources.Snapshot{}, err
		}
		last = err
		c.log.WarnContext(ctx, "veeam listing moved during the sweep; sweeping again", "sweep", sweep, "error", err)
	}
	return sources.Snapshot{}, fmt.Errorf("source %s: listing did not settle after %d sweeps: %w", c.cfg.Name, c.cfg.MaxSweeps, last)
}

// sweep pages through the whole listing once, handing each page to out,
// and returns how many distinct users it saw. It returns an error wrapping
// errDrift when the listing moved under it.
func (c *Client) sweep(ctx context.Context, sweep int, out sources.Pages) (int, int, error) {
	// The ids seen, by a hash on the first sweep: to tell a repeat from a
	// new user and count the distinct users without keeping a million
	// strings. Two ids with one hash (about 1 in 10^7 listings of a million
	// users) would count one user short, as a listing that moved does; the
	// sweeps after the first therefore count exact ids, so that a collision
	// costs one sweep more and never blocks the source.
	seen := map[uint64]struct{}{}
	var exact map[string]struct{}
	if sweep > 1 {
		exact = map[string]struct{}{}
	}
	isNew := func(id string) bool {
		if exact != nil {
			_, ok := exact[id]
			exact[id] = struct{}{}
			return !ok
		}
		h := idHash(id)
		_, ok := seen[h]
		seen[h] = struct{}{}
		return !ok
	}
	offset, total, pageNo := 0, 0, 0
	for {
		pageNo++
		body, err := c.fetchPage(ctx, offset, pageNo)
		if err != nil {
			return 0, pageNo, err
		}
		p, err := decodePage(c.cfg.Name, pageNo, body)
		if err != nil {
			return 0, pageNo, c.scrubDecode(err)
		}
		if p.offset != offset {
			// Some servers ignore offset for some queries; trusting the page
			// would silently repeat or skip users.
			return 0, pageNo, fmt.Errorf("page %d: server echoed offset %d for offset %d: %w", pageNo, p.offset, offset, errDrift)
		}
		total = p.total
		var fresh, again []events.User
		for _, u := range p.users {
			if !isNew(u.ID) {
				// An item shifted onto the next page; the later copy is newer.
				again = append(again, u)
				continue
			}
			fresh = append(fresh, u)
		}
		if err := out.Page(fresh); err != nil {
			return 0, pageNo, err
		}
		for _, u := range again { // after the page: a repeat may be of its own users
			if err := out.Replace(u); err != nil {
				return 0, pageNo, err
			}
		}
		c.log.DebugContext(ctx, "veeam page fetched", "sweep", sweep, "page", pageNo, "offset", offset, "items", len(p.users), "total", total)
		// Advance by what arrived, not by PageSize: a server whose cap is
		// below the requested limit returns short pages.
		offset += len(p.users)
		if len(p.users) == 0 || offset >= total {
			break
		}
	}
	n := len(seen)
	if exact != nil {
		n = len(exact)
	}
	if n != total {
		return 0, pageNo, fmt.Errorf("saw %d unique users but the server reports %d: %w", n, total, errDrift)
	}
	return n, pageNo, nil
}

// idHash is the hash sweep tells ids apart by on a first sweep; a
// variable so that a test can make ids collide.
var idHash = fnv64a

// fnv64a is a 64-bit FNV-1a hash of a user id.
func fnv64a(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// fetchPage gets one page, retrying throttling, server and transport errors.
func (c *Client) fetchPage(ctx context.Context, offset, page int) ([]byte, error) {
	q := url.Values{}
	q.Set("limit", strconv.Itoa(c.cfg.PageSize))
	q.Set("offset", strconv.Itoa(offset))
	q.Set("sort", sortParam)
	u := c.usersURL + "?" + q.Encode()
	return c.retrying(ctx, "page "+strconv.Itoa(page), slog.Int("page", page), func() ([]byte, error) {
		return c.get(ctx, u, "users")
	})
}

// errAbsent is a lookup's 404: the API confirms the user does not exist.
var errAbsent = errors.New("user not found")

// LookupUser asks GET /api/v3/users/{id} whether the user with instanceUid
// id exists. A user missing from a complete snapshot may only have shifted
// across a page boundary while the directory changed, so the poller
// confirms an absence here before retiring anyone.
//
// It answers (true, nil) for a 200 carrying that user and (false, nil) only
// for a 404 in Veeam's errors envelope. Everything else is an error and
// never an absence: throttling, 520s and transport errors are retried like
// list pages (bounded by MaxAttempts), a 401 of a logged-in user refreshes
// the token once, and a 404 without the envelope (a proxy's page, a wrong
// base URL) or a 200 for another user proves nothing.
func (c *Client) LookupUser(ctx context.Context, id string) (present bool, err error) {
	what := "lookup of user " + quoteID(id)
	if id == "" || id == "." || id == ".." {
		// As a path segment these name the collection or its parent.
		return false, fmt.Errorf("source %s: %s: the id cannot be looked up by path", c.cfg.Name, what)
	}
	u := c.usersURL + "/" + url.PathEscape(id)
	body, err := c.retrying(ctx, what, slog.String("lookup", quoteID(id)), func() ([]byte, error) {
		bearer, err := c.bearer(ctx)
		if err != nil {
			return nil, err
		}
		body, err := c.send(ctx, u, "user", bearer)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.enveloped {
			return nil, errAbsent
		}
		return body, err
	})
	switch {
	case errors.Is(err, errAbsent):
		return false, nil
	case err != nil:
		return false, err
	}
	if err := decodeLookup(c.cfg.Name, id, body); err != nil {
		return false, fmt.Errorf("source %s: %s: %w", c.cfg.Name, what, c.scrubDecode(err))
	}
	return true, nil
}

// retrying calls once until it succeeds, retrying throttling, server and
// transport errors with backoff (at most MaxAttempts times) and refreshing a
// logged-in user's access token once on a 401. what names the request in
// errors ("page 3"); attr names it in log lines.
func (c *Client) retrying(ctx context.Context, what string, attr slog.Attr, once func() ([]byte, error)) ([]byte, error) {
	refreshed := false
	for attempt := 1; ; attempt++ {
		body, err := once()
		if err == nil {
			return body, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("source %s: %s: %w", c.cfg.Name, what, ctxErr)
		}
		var ae *APIError
		isAPI := errors.As(err, &ae)
		if isAPI && ae.Status == http.StatusUnauthorized && c.cfg.Token == "" && !refreshed {
			// The access token expired early or another login revoked it:
			// refresh once and retry the same request without spending an
			// attempt.
			refreshed = true
			c.log.WarnContext(ctx, "veeam access token rejected; refreshing", attr)
			c.dropAccessToken()
			attempt--
			continue
		}
		retry, floor := retryable(err)
		if !retry || attempt >= c.cfg.MaxAttempts {
			if retry {
				return nil, fmt.Errorf("source %s: %s: giving up after %d attempts: %w", c.cfg.Name, what, attempt, err)
			}
			return nil, fmt.Errorf("source %s: %s: %w", c.cfg.Name, what, err)
		}
		delay := c.cfg.Backoff.Delay(attempt, floor)
		c.log.WarnContext(ctx, "veeam request failed; retrying", attr, "attempt", attempt, "delay", delay, "error", err)
		if c.cfg.Observer != nil {
			c.cfg.Observer.Retry()
		}
		if err := httpx.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("source %s: %s: %w", c.cfg.Name, what, err)
		}
	}
}

// retryable classifies an error of get or the token endpoint.
func retryable(err error) (bool, time.Duration) {
	var ae *APIError
	if errors.As(err, &ae) {
		return httpx.Classify(ae.Status) == httpx.Retry, ae.retryAfter
	}
	// A certificate the client does not trust will not become trusted by
	// asking again; say so at once instead of after every attempt.
	var cve *tls.CertificateVerificationError
	if errors.Is(err, httpx.ErrBodyTooLarge) || errors.As(err, &cve) {
		return false, 0
	}
	return httpx.Retryable(err)
}

// get makes one GET of rawURL (below /api/v3/users) and returns the body of
// a 200. what names the resource in transport errors ("users", "user").
func (c *Client) get(ctx context.Context, rawURL, what string) ([]byte, error) {
	bearer, err := c.bearer(ctx)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, rawURL, what, bearer)
}

// send is get with the bearer token already chosen, so that a caller can
// tell the resource's own answer from a failure at the token endpoint.
func (c *Client) send(ctx context.Context, rawURL, what, bearer string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	// No X-Request-id: it would turn the GET into an asynchronous action.
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, httpx.StripURL("get "+what, err)
	}
	defer resp.Body.Close()
	if isRedirect(resp.StatusCode) {
		return nil, c.redirectError(resp)
	}
	body, err := httpx.ReadBody(resp.Body, c.cfg.MaxBodyBytes)
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return nil, err
		}
		return nil, &httpx.TransportError{Op: "read " + what + " response", Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		ae := parseAPIError(resp, body)
		if c.cfg.Token != "" {
			ae.staticToken = true
			if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
				ae.hint = "the API key was refused: check VEEAM_TOKEN (a valid, unrevoked key of a user allowed to list users)"
			}
		} else if ae.Status == http.StatusForbidden {
			ae.hint = "the user is not allowed to list users: give VEEAM_USERNAME a role that may, or use an API key (VEEAM_TOKEN)"
		}
		return nil, c.redact(ae)
	}
	return body, nil
}

// parseAPIError builds an APIError from a non-200 answer, preferring the
// server's errors envelope. Its text is the server's, whole: the caller
// scrubs it.
func parseAPIError(resp *http.Response, body []byte) *APIError {
	ae := &APIError{Status: resp.StatusCode}
	var env struct {
		Errors []struct {
			Message    string          `json:"message"`
			Type       string          `json:"type"`
			Code       json.RawMessage `json:"code"`
			RetryAfter json.Number     `json:"retryAfter"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		e := env.Errors[0]
		ae.enveloped = true
		ae.Message, ae.Type = e.Message, e.Type
		var code string
		switch {
		case json.Unmarshal(e.Code, &code) == nil:
			ae.Code = code
		case len(e.Code) > 0 && string(e.Code) != "null":
			ae.Code = string(e.Code) // a number, as the API sends it
		}
		if s, err := e.RetryAfter.Float64(); err == nil {
			ae.retryAfter = httpx.Seconds(s)
		}
	} else if resp.StatusCode == http.StatusAccepted {
		ae.Message = "unexpected asynchronous answer"
	} else {
		ae.Message = http.StatusText(resp.StatusCode)
	}
	// Whichever wait is longer: never retry earlier than the server asked.
	if d, ok := httpx.RetryAfter(resp.Header, time.Now()); ok && d > ae.retryAfter {
		ae.retryAfter = d
	}
	return ae
}

// secrets lists the credentials the client holds; c.mu must be held.
func (c *Client) secretsLocked() []string {
	return []string{c.cfg.Token, c.cfg.Password, c.access, c.refresh}
}

// redact makes the server's text in ae safe to quote: see scrubLocked.
func (c *Client) redact(ae *APIError) *APIError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scrubLocked(ae)
}

// scrubDecode removes every credential the client holds from a decode
// error, whose field path and message quote the server's member names and
// values: a server that echoes the token back as a name must not put it in
// the error. A *sources.DecodeError stays one, for callers that branch on
// it.
func (c *Client) scrubDecode(err error) error {
	c.mu.Lock()
	r := redact.New(c.secretsLocked()...)
	c.mu.Unlock()
	var de *sources.DecodeError
	if errors.As(err, &de) {
		de.Field = r.String(de.Field)
		de.Err = r.Err(de.Err)
		return err
	}
	return r.Err(err)
}

// scrubLocked removes every credential the client holds from the text of
// ae, in case a server echoes one back (escaped or encoded too), strips
// control characters and cuts each field to its limit; c.mu must be held.
func (c *Client) scrubLocked(ae *APIError) *APIError {
	r := redact.New(c.secretsLocked()...)
	ae.Message = r.Excerpt(ae.Message, APITextLimit)
	ae.Type = r.Excerpt(ae.Type, codeLimit)
	ae.Code = r.Excerpt(ae.Code, codeLimit)
	return ae
}

// bearer returns the token to send, obtaining or refreshing an access token
// when the client logs in with a username and password.
func (c *Client) bearer(ctx context.Context) (string, error) {
	if c.cfg.Token != "" {
		return c.cfg.Token, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.access != "" && time.Now().Before(c.refreshAt) {
		return c.access, nil
	}
	if c.refresh != "" {
		err := c.grantLocked(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.refresh}})
		if err == nil {
			return c.access, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
		// A spent or revoked refresh token is not fatal while the password
		// still works.
		c.log.WarnContext(ctx, "veeam token refresh failed; logging in again", "error", err)
		c.refresh = ""
	}
	err := c.grantLocked(ctx, url.Values{"grant_type": {"password"}, "username": {c.cfg.Username}, "password": {c.cfg.Password}})
	if err != nil {
		return "", err
	}
	return c.access, nil
}

// dropAccessToken forces the next request to refresh.
func (c *Client) dropAccessToken() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.access = ""
}

// grantLocked calls the token endpoint; c.mu must be held.
func (c *Client) grantLocked(ctx context.Context, form url.Values) error {
	grant := form.Get("grant_type")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return httpx.StripURL("token "+grant, err)
	}
	defer resp.Body.Close()
	if isRedirect(resp.StatusCode) {
		return fmt.Errorf("token %s: %w", grant, c.redirectError(resp))
	}
	body, err := httpx.ReadBody(resp.Body, tokenBodyLimit)
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return fmt.Errorf("token %s: %w", grant, err)
		}
		return &httpx.TransportError{Op: "read token response", Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		ae := parseAPIError(resp, body)
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &oe) == nil && oe.Error != "" {
			ae.Message, ae.Code = oe.Description, oe.Error
		}
		c.scrubLocked(ae)
		ae.Message = "token " + grant + ": " + ae.Message
		if grant == "password" && httpx.Classify(ae.Status) == httpx.Permanent {
			ae.login = true
			ae.hint = "the login was refused: check VEEAM_USERNAME and VEEAM_PASSWORD, or use an API key (VEEAM_TOKEN)"
			if mentionsMFA(ae.Code) || mentionsMFA(ae.Message) {
				ae.hint = mfaHint
			}
		}
		return ae
	}
	var tok struct {
		AccessToken  string      `json:"access_token"`
		RefreshToken string      `json:"refresh_token"`
		ExpiresIn    json.Number `json:"expires_in"`
		MFAToken     string      `json:"mfa_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return fmt.Errorf("token %s: decode response: %w", grant, err)
	}
	if tok.AccessToken == "" {
		if tok.MFAToken != "" {
			return &APIError{Status: resp.StatusCode, Code: "mfa_required", login: true, hint: mfaHint,
				Message: "token " + grant + ": the user requires multi-factor authentication"}
		}
		return fmt.Errorf("token %s: response has no access token", grant)
	}
	ttl := time.Hour
	if s, err := tok.ExpiresIn.Float64(); err == nil && httpx.Seconds(s) > 0 {
		ttl = httpx.Seconds(s)
	}
	// Refresh a little early so a page never goes out with a token that
	// expires in flight.
	skew := min(time.Minute, ttl/5)
	c.access = tok.AccessToken
	if tok.RefreshToken != "" {
		c.refresh = tok.RefreshToken
	}
	c.refreshAt = time.Now().Add(ttl - skew)
	c.log.DebugContext(ctx, "veeam token obtained", "grant", grant, "expiresIn", ttl)
	return nil
}

// mfaHint is what an operator whose poller account has MFA must do.
const mfaHint = "a poller cannot complete multi-factor authentication: create an API key for this user " +
	"(or a user without MFA) and set VEEAM_TOKEN instead of VEEAM_USERNAME and VEEAM_PASSWORD"

func mentionsMFA(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "mfa") || strings.Contains(s, "multi-factor") || strings.Contains(s, "two-factor")
}

// quoteID quotes a user id for error text, shortened: ids can be kilobytes.
func quoteID(id string) string {
	const limit = 64
	if len(id) <= limit {
		return strconv.Quote(id)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(id[cut]) {
		cut--
	}
	return strconv.Quote(id[:cut]) + "…"
}
