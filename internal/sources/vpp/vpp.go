// Package vpp is rollcall's client for Apple's legacy VPP getVPPUsersSrv
// endpoint: it pages through a full or incremental user listing, retries
// what Apple says is worth retrying, and turns the users into events.User.
//
// With Config.ServiceConfigURL set it finds getVPPUsersSrv through Apple's
// VPPServiceConfigSrv and follows it when Apple answers 9617 (URL moved).
//
// The sToken is a secret: it only ever travels in request bodies, and no
// error or log line of this package contains it, nor anything a
// VPPServiceConfigSrv answer says.
package vpp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// Apple's error numbers (errorNumber of a status -1 answer).
const (
	ErrMissingArgument     = 9600 // a bug on our side: fail the run
	ErrLoginRequired       = 9601 // sToken missing: stop the source
	ErrInvalidArgument     = 9602
	ErrInternal            = 9603 // retry the same request
	ErrURLMoved            = 9617 // re-read VPPServiceConfigSrv
	ErrTokenExpired        = 9621 // stop the source
	ErrInvalidToken        = 9622 // stop the source
	ErrTokenRevoked        = 9625 // stop the source
	ErrTokenNotApplicable  = 9629 // sToken does not fit the batchToken: full sync
	ErrBatchNotRecoverable = 9633 // full sync
	ErrServiceRemoved      = 9634 // stop the source
	ErrMaintenance         = 9644 // retry with backoff
	ErrTooManyRequests     = 9646 // retry with backoff
)

// Defaults for Config.
const (
	DefaultMaxBodyBytes = 64 << 20
	DefaultMaxAttempts  = 6
	DefaultTimeout      = 30 * time.Second

	// DefaultServiceConfigURL is Apple's VPPServiceConfigSrv, the value to
	// put in Config.ServiceConfigURL (VPP_SERVICE_CONFIG_URL) to turn on
	// service discovery.
	DefaultServiceConfigURL = "https://vpp.itunes.apple.com/mdm/VPPServiceConfigSrv"
	// DefaultServiceConfigTTL is how long a read service configuration is
	// used: Apple asks clients to re-read it every five minutes.
	DefaultServiceConfigTTL = 5 * time.Minute
	// DefaultInternalErrorPause is the wait between attempts once a request
	// has failed InternalErrorBackoffs times with 9603: Apple asks for
	// minutes.
	DefaultInternalErrorPause = 2 * time.Minute
	// DefaultInternalErrorWaits is how many attempts are made after such a
	// pause before the run fails.
	DefaultInternalErrorWaits = 2
	// InternalErrorBackoffs is how many 9603 answers one request gets with
	// ordinary exponential backoff before the client pauses instead.
	InternalErrorBackoffs = 5
)

// ErrPaging is wrapped by errors for listings that cannot be finished: the
// same batchToken twice in a row, more batches than announced, or batches
// that never carry a token.
var ErrPaging = errors.New("inconsistent paging")

// APIError is a status -1 answer.
type APIError struct {
	Number  int
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("vpp error %d", e.Number)
	}
	return fmt.Sprintf("vpp error %d: %s", e.Number, e.Message)
}

// StopsSource reports whether the error means that polling cannot succeed
// until an operator acts (9601 login required, 9621 token expired, 9622
// invalid token, 9625 token revoked, 9634 service removed): the poller
// should stop this source and report it instead of retrying.
func (e *APIError) StopsSource() bool {
	switch e.Number {
	case ErrLoginRequired, ErrTokenExpired, ErrInvalidToken, ErrTokenRevoked, ErrServiceRemoved:
		return true
	}
	return false
}

func (e *APIError) retryable() bool {
	switch e.Number {
	case ErrInternal, ErrMaintenance, ErrTooManyRequests:
		return true
	}
	return false
}

// RestartsFull reports whether the listing cannot be continued and must be
// redone as a full sync (9629 sToken not applicable to the batchToken, 9633
// batch data not recoverable). Snapshot already does so once for an
// incremental run; a full sync that fails this way fails the run.
func (e *APIError) RestartsFull() bool {
	return e.Number == ErrBatchNotRecoverable || e.Number == ErrTokenNotApplicable
}

// Config configures a Client.
type Config struct {
	Name    string // source name, e.g. "vpp"
	BaseURL string // e.g. https://vpp.itunes.apple.com/mdm; optional with ServiceConfigURL
	SToken  string // secret
	// ServiceConfigURL turns on service discovery (VPP_SERVICE_CONFIG_URL,
	// e.g. DefaultServiceConfigURL): the client POSTs {} there, sends its
	// getVPPUsersSrv requests to the getUsersSrvUrl it learns instead of
	// BaseURL+"/getVPPUsersSrv", re-reads it once it is older than
	// ServiceConfigTTL, and re-reads it at once when Apple answers 9617
	// (URL moved), then retries that request once. Without it, 9617 fails
	// the run with an error that says to set VPP_SERVICE_CONFIG_URL.
	ServiceConfigURL string
	ServiceConfigTTL time.Duration // default DefaultServiceConfigTTL
	HTTPClient       *http.Client
	MaxBodyBytes     int64 // default DefaultMaxBodyBytes
	// MaxAttempts bounds the attempts of one request that fails with
	// anything retryable except 9603 (default DefaultMaxAttempts). 9603
	// follows Apple's schedule instead: InternalErrorBackoffs attempts with
	// backoff, then up to InternalErrorWaits more, InternalErrorPause apart.
	MaxAttempts        int
	InternalErrorPause time.Duration // default DefaultInternalErrorPause
	InternalErrorWaits int           // default DefaultInternalErrorWaits; negative: none
	Backoff            httpx.Backoff
	Logger             *slog.Logger   // nil: discard
	Observer           httpx.Observer // nil: none; sees every request and retry
}

// Client lists the users of one VPP location. It is safe for concurrent
// use, though the poller runs one Snapshot at a time per source.
type Client struct {
	name     string
	endpoint string // BaseURL + /getVPPUsersSrv, used without discovery
	sToken   string
	token    TokenInfo
	tokenOK  bool
	hc       *http.Client
	maxBody  int64
	attempts int
	pause    time.Duration
	waits    int
	backoff  httpx.Backoff
	log      *slog.Logger
	obs      httpx.Observer

	disc *discovery // nil: no service discovery
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if !events.ValidSourceName(cfg.Name) {
		return nil, fmt.Errorf("vpp: invalid source name %q", cfg.Name)
	}
	base := strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	var disc *discovery
	if cfg.ServiceConfigURL != "" {
		d, err := newDiscovery(cfg.ServiceConfigURL, cfg.ServiceConfigTTL)
		if err != nil {
			return nil, fmt.Errorf("vpp: source %s: %w", cfg.Name, err)
		}
		disc = d
	}
	// With discovery the base URL is not used; an empty one is fine.
	if disc == nil || base != "" {
		if !httpURL(base) {
			return nil, fmt.Errorf("vpp: source %s: base URL %q is not an http(s) URL", cfg.Name, cfg.BaseURL)
		}
	}
	tok := strings.TrimSpace(cfg.SToken)
	if tok == "" {
		return nil, fmt.Errorf("vpp: source %s: sToken is empty", cfg.Name)
	}
	// Real sTokens decode; test tokens and future formats may not, and
	// Apple, not this client, decides whether a token is valid.
	info, terr := DecodeSToken(tok)
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		hc.Timeout = DefaultTimeout
	}
	// A redirect would resend the body, sToken included, to a host nobody
	// configured; Apple's 3xx answers are throttling and mean "retry".
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{
		name:     cfg.Name,
		endpoint: base + "/getVPPUsersSrv",
		sToken:   tok,
		token:    info,
		tokenOK:  terr == nil,
		hc:       httpx.Observe(&hc, cfg.Observer),
		maxBody:  cfg.MaxBodyBytes,
		attempts: cfg.MaxAttempts,
		pause:    cfg.InternalErrorPause,
		waits:    cfg.InternalErrorWaits,
		backoff:  cfg.Backoff,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		disc:     disc,
	}
	if !c.tokenOK {
		c.token = TokenInfo{}
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.attempts <= 0 {
		c.attempts = DefaultMaxAttempts
	}
	if c.pause <= 0 {
		c.pause = DefaultInternalErrorPause
	}
	switch {
	case c.waits == 0:
		c.waits = DefaultInternalErrorWaits
	case c.waits < 0:
		c.waits = 0
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("source", c.name)
	return c, nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Name is the source name.
func (c *Client) Name() string { return c.name }

// TokenInfo returns the organisation and expiry carried by the configured
// sToken, decoded once by New. ok is false when the token does not decode
// (New accepts such tokens: Apple decides whether a token is valid). The
// token itself is never exposed.
func (c *Client) TokenInfo() (info TokenInfo, ok bool) { return c.token, c.tokenOK }

// Kind is events.KindVPP.
func (c *Client) Kind() string { return events.KindVPP }

// Snapshot lists the users: everything (with retired users, so that later
// deltas report retirements) when there is no cursor or req.Full is set,
// otherwise the users modified since req.Cursor. An incremental run whose
// cursor Apple no longer accepts is redone once as a full listing.
func (c *Client) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	full := req.Cursor == "" || req.Full
	snap, err := c.list(ctx, full, req.Cursor)
	var ae *APIError
	if err != nil && !full && errors.As(err, &ae) && ae.RestartsFull() {
		c.log.WarnContext(ctx, "vpp sinceModifiedToken not accepted, restarting as a full sync", "error_number", ae.Number)
		return c.list(ctx, true, "")
	}
	return snap, err
}

type requestBody struct {
	SToken             string `json:"sToken"`
	BatchToken         string `json:"batchToken,omitempty"`
	SinceModifiedToken string `json:"sinceModifiedToken,omitempty"`
	IncludeRetired     int    `json:"includeRetired,omitempty"`
}

func (c *Client) list(ctx context.Context, full bool, cursor string) (sources.Snapshot, error) {
	snap := sources.Snapshot{Complete: full}
	body := requestBody{SToken: c.sToken}
	if full {
		body.IncludeRetired = 1
	} else {
		body.SinceModifiedToken = cursor
	}
	seen := map[int64]int{} // userId → batch it came in
	var total int64
	for batch := 1; ; batch++ {
		resp, err := c.fetch(ctx, batch, body)
		if err != nil {
			return sources.Snapshot{}, err
		}
		snap.Pages = batch
		if resp.TotalBatchCount > 0 {
			total = resp.TotalBatchCount
		}
		for i, u := range resp.Users {
			if b, dup := seen[u.UserID]; dup {
				return sources.Snapshot{}, &sources.DecodeError{Source: c.name, Page: batch,
					Field: fmt.Sprintf("users[%d].userId", i),
					Err:   fmt.Errorf("duplicate userId %d, already in batch %d", u.UserID, b)}
			}
			seen[u.UserID] = batch
			snap.Users = append(snap.Users, c.normalise(u))
		}
		c.log.DebugContext(ctx, "vpp batch fetched", "batch", batch, "users", len(resp.Users), "total_batches", total)
		if resp.SinceModifiedToken != "" {
			// Only the final batch carries it, even when that batch is empty.
			snap.Cursor = resp.SinceModifiedToken
			return snap, nil
		}
		if resp.BatchToken == body.BatchToken {
			return sources.Snapshot{}, fmt.Errorf("source %s: batch %d: same batchToken returned twice in a row: %w", c.name, batch, ErrPaging)
		}
		if total > 0 && int64(batch) >= total {
			return sources.Snapshot{}, fmt.Errorf("source %s: batch %d: more batches than totalBatchCount %d: %w", c.name, batch, total, ErrPaging)
		}
		body.BatchToken = resp.BatchToken
		// The batchToken carries the listing's settings; Apple wants
		// nothing else beside it.
		body.SinceModifiedToken = ""
	}
}

func (c *Client) normalise(u user) events.User {
	return events.User{
		Source:       c.name,
		SourceKind:   events.KindVPP,
		ID:           strconv.FormatInt(u.UserID, 10),
		Email:        u.Email,
		ClientUserID: u.ClientUserIDStr,
		Status:       strings.ToLower(u.Status),
		Raw:          u.Raw,
	}
}

// fetch gets one batch, retrying what is worth retrying. The response it
// returns has status 0 and at least one token.
//
// Retries: 9603 (internal error) gets InternalErrorBackoffs attempts with
// exponential backoff, then up to c.waits more, c.pause apart; any other
// retryable failure (9644, 9646, 408/429/5xx/3xx, transport errors, a batch
// without tokens) counts against c.attempts. No wait is ever shorter than a
// Retry-After the server sent. 9617 (URL moved) re-reads the service
// configuration and retries once, without waiting.
func (c *Client) fetch(ctx context.Context, batch int, body requestBody) (*response, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("source %s: batch %d: encode request: %w", c.name, batch, err)
	}
	var (
		failures int  // retryable failures other than 9603
		internal int  // 9603 answers
		moved    bool // 9617 already followed
	)
	for attempt := 1; ; attempt++ {
		endpoint, floor, err := c.usersEndpoint(ctx, batch)
		var resp *response
		if err == nil {
			resp, floor, err = c.do(ctx, batch, endpoint, payload)
			if err == nil {
				return resp, nil
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("source %s: batch %d: %w", c.name, batch, ctx.Err())
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Number == ErrURLMoved {
			switch {
			case c.disc == nil:
				return nil, fmt.Errorf("%w; Apple moved getVPPUsersSrv: set VPP_SERVICE_CONFIG_URL (Apple's is %s) so that rollcall follows it", err, DefaultServiceConfigURL)
			case moved:
				return nil, fmt.Errorf("%w (again after re-reading the service configuration)", err)
			}
			moved = true
			c.log.WarnContext(ctx, "vpp getVPPUsersSrv URL moved (9617), re-reading the service configuration", "batch", batch, "attempt", attempt)
			c.disc.invalidate(endpoint)
			if err := httpx.Sleep(ctx, floor); err != nil {
				return nil, fmt.Errorf("source %s: batch %d: %w", c.name, batch, err)
			}
			continue
		}
		var retry retryError
		if !errors.As(err, &retry) {
			return nil, err
		}
		lastErr := retry.err
		var delay time.Duration
		level := slog.LevelWarn
		if errors.As(lastErr, &ae) && ae.Number == ErrInternal {
			internal++
			switch {
			case internal < InternalErrorBackoffs:
				delay = c.backoff.Delay(internal, floor)
				if internal == 1 && floor == 0 {
					level = slog.LevelDebug
				}
			case internal-InternalErrorBackoffs < c.waits:
				// Apple: after five failures, retry minutes apart.
				delay = max(c.pause, floor)
				c.log.WarnContext(ctx, "vpp internal error (9603) keeps coming back, pausing before the next attempt as Apple asks",
					"batch", batch, "internal_errors", internal, "pause", delay,
					"pauses_left", c.waits-(internal-InternalErrorBackoffs)-1)
			default:
				return nil, fmt.Errorf("source %s: batch %d: giving up after %d attempts (%d internal errors, %d pauses of %v): %w",
					c.name, batch, attempt, internal, c.waits, c.pause, lastErr)
			}
		} else {
			failures++
			if failures >= c.attempts {
				return nil, fmt.Errorf("source %s: batch %d: giving up after %d attempts: %w", c.name, batch, attempt, lastErr)
			}
			delay = c.backoff.Delay(failures, floor)
			if failures == 1 && floor == 0 {
				level = slog.LevelDebug
			}
		}
		c.log.Log(ctx, level, "vpp request failed, retrying", "batch", batch, "attempt", attempt, "delay", delay, "error", lastErr)
		if c.obs != nil {
			c.obs.Retry()
		}
		if err := httpx.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("source %s: batch %d: %w", c.name, batch, err)
		}
	}
}

// retryError marks a failure worth another attempt of the same request.
type retryError struct{ err error }

func (e retryError) Error() string { return e.err.Error() }
func (e retryError) Unwrap() error { return e.err }

// do makes one attempt at endpoint. A retryable failure comes back as
// retryError with the least wait the server asked for; so does 9617, as a
// plain error.
func (c *Client) do(ctx context.Context, batch int, endpoint string, payload []byte) (*response, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		// The message of url.Parse quotes the URL, which may come from the
		// service configuration.
		return nil, 0, fmt.Errorf("source %s: batch %d: build request: invalid getVPPUsersSrv URL", c.name, batch)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, retryError{httpx.StripURL("post getVPPUsersSrv", err)}
	}
	defer res.Body.Close()
	floor, _ := httpx.RetryAfter(res.Header, time.Now())

	if res.StatusCode < 200 || res.StatusCode > 299 {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		se := &httpx.StatusError{Code: res.StatusCode, RetryAfter: floor}
		if httpx.Classify(res.StatusCode) == httpx.Retry || (res.StatusCode >= 300 && res.StatusCode < 400) {
			return nil, floor, retryError{se}
		}
		return nil, 0, fmt.Errorf("source %s: batch %d: %w", c.name, batch, se)
	}
	raw, err := httpx.ReadBody(res.Body, c.maxBody)
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return nil, 0, fmt.Errorf("source %s: batch %d: %w", c.name, batch, err)
		}
		return nil, floor, retryError{&httpx.TransportError{Op: "read getVPPUsersSrv response", Err: err}}
	}
	resp, err := decodeResponse(raw)
	if err != nil {
		de := &sources.DecodeError{Source: c.name, Page: batch, Err: err}
		var fe *fieldError
		if errors.As(err, &fe) {
			de.Field, de.Err = fe.Field, fe.Err
		}
		return nil, 0, de
	}
	switch resp.Status {
	case 0:
	case -1:
		ae := &APIError{Number: int(resp.ErrorNumber), Message: c.scrub(resp.ErrorMessage)}
		if ae.retryable() {
			return nil, floor, retryError{ae}
		}
		if ae.Number == ErrURLMoved {
			return nil, floor, fmt.Errorf("source %s: batch %d: %w", c.name, batch, ae)
		}
		return nil, 0, fmt.Errorf("source %s: batch %d: %w", c.name, batch, ae)
	default:
		return nil, 0, &sources.DecodeError{Source: c.name, Page: batch, Field: "status",
			Err: fmt.Errorf("unknown status %d", resp.Status)}
	}
	if resp.BatchToken == "" && resp.SinceModifiedToken == "" {
		// Apple documents this as a failed batch, not the end of the listing.
		return nil, floor, retryError{fmt.Errorf("batch carried neither batchToken nor sinceModifiedToken: %w", ErrPaging)}
	}
	return resp, 0, nil
}

// scrub keeps a server's error message short and free of the sToken, which
// a server might echo back.
func (c *Client) scrub(msg string) string {
	msg = strings.ReplaceAll(msg, c.sToken, "[sToken]")
	const max = 300
	if len(msg) > max {
		msg = strings.ToValidUTF8(msg[:max], "") + "…"
	}
	return msg
}
