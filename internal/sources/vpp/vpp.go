// Package vpp is rollcall's client for Apple's legacy VPP service. Snapshot
// pages through a full or incremental getVPPUsersSrv listing, retries what
// Apple says is worth retrying, and turns the users into events.User;
// LookupUser asks getVPPUserSrv about one user, so that an absence from a
// complete listing can be confirmed before it is published (SPEC §1.3).
//
// A listing never runs forever. Besides totalBatchCount, which Apple often
// sends as "0" (its own example does), the number of batches is capped by
// what totalCount and the largest batch seen imply, with room to spare, and
// by Config.MaxBatches. A listing Apple cannot continue (9629, 9633) is
// started again from the beginning as a full listing, at most
// Config.MaxFullRestarts times.
//
// With Config.ServiceConfigURL set it finds getVPPUsersSrv and getVPPUserSrv
// through Apple's VPPServiceConfigSrv and follows it when Apple answers 9617
// (URL moved).
//
// The sToken is a secret: it only ever travels in request bodies, and no
// error or log line of this package contains it, nor anything a
// VPPServiceConfigSrv answer says.
package vpp

import (
	"bytes"
	"context"
	"encoding/base64"
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
	"github.com/rollcall/rollcall/internal/redact"
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

	// ErrUserNotFound (Apple: "Registered user not found.") is the one
	// answer LookupUser takes for an absence. Apple's "Interpreting Error
	// Codes" lists the number and its message but not which endpoints send
	// it; that getVPPUserSrv answers it for a userId the location does not
	// hold is an assumption. Because of it, every other number (9604
	// "Result not found" and 9620 "already deleted" included) is an error
	// from LookupUser, never an absence: the caller then confirms the
	// absence with a second complete snapshot instead.
	ErrUserNotFound = 9609
)

// Defaults for Config.
const (
	DefaultMaxBodyBytes = 64 << 20
	DefaultMaxAttempts  = 6
	DefaultTimeout      = 30 * time.Second

	// DefaultMaxBatches caps a listing when Apple announces neither
	// totalBatchCount nor totalCount: at the several hundred users Apple
	// puts in a batch, millions of users.
	DefaultMaxBatches = 20000
	// DefaultMaxFullRestarts is how often a full listing that Apple cannot
	// continue (9629, 9633) is started again before the run fails.
	DefaultMaxFullRestarts = 3

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
// same batchToken twice in a row, more batches than totalBatchCount,
// totalCount or Config.MaxBatches allow, or batches that never carry a
// token.
var ErrPaging = errors.New("inconsistent paging")

// ErrInvalidUserID is wrapped by the error LookupUser returns, without a
// request, for an id that is not a VPP userId in decimal.
var ErrInvalidUserID = errors.New("not a decimal VPP userId")

// Batch cap without a usable totalBatchCount: a listing may take
// batchMargin times the batches that totalCount implies at the largest
// batch size seen, plus spareBatches for the empty batches Apple sometimes
// inserts.
const (
	batchMargin  = 2
	spareBatches = 5
)

// MessageLimit bounds APIError.Message, in bytes: Apple's errorMessage is
// quoted in errors that are logged on every retry and kept in the source's
// health for /readyz.
const MessageLimit = 300

// APIError is a status -1 answer. Message is Apple's errorMessage made safe
// to quote: without the sToken in any spelling (see redact.New), control
// characters or line breaks, and at most MessageLimit bytes.
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
// redone as a full sync from the beginning (9629 sToken not applicable to
// the batchToken, 9633 batch data not recoverable). Snapshot does so itself:
// an incremental run becomes a full one, and a full listing is started
// again, up to Config.MaxFullRestarts times.
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
	// BaseURL+"/getVPPUsersSrv" and its getVPPUserSrv requests (LookupUser)
	// to getUserSrvUrl instead of BaseURL+"/getVPPUserSrv", re-reads it once
	// it is older than ServiceConfigTTL, and re-reads it at once when Apple
	// answers 9617 (URL moved), then retries that request once. Without it,
	// 9617 fails the run with an error that says to set
	// VPP_SERVICE_CONFIG_URL.
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
	Backoff            httpx.Backoff // also paces restarts of a full listing
	// MaxBatches is the most batches one listing may take, whatever Apple
	// announces (default DefaultMaxBatches). It is what stops a server that
	// hands out fresh batchTokens forever when it sends neither
	// totalBatchCount nor totalCount; with totalCount the cap it implies is
	// usually far lower.
	MaxBatches int
	// MaxFullRestarts bounds how often a full listing that Apple cannot
	// continue (9629, 9633) is started again from the beginning, each time
	// with a WARN log line, before the run fails (default
	// DefaultMaxFullRestarts; negative: never). An incremental run Apple
	// refuses that way becomes a full listing first, which does not count.
	MaxFullRestarts int
	Logger          *slog.Logger   // nil: discard
	Observer        httpx.Observer // nil: none; sees every request and retry
}

// Client lists the users of one VPP location. It is safe for concurrent
// use, though the poller runs one Snapshot at a time per source.
type Client struct {
	name     string
	base     string // BaseURL without a trailing slash, used without discovery
	sToken   string
	redactor *redact.Redactor // the sToken and the token inside it
	token    TokenInfo
	tokenOK  bool
	hc       *http.Client
	maxBody  int64
	attempts int
	pause    time.Duration
	waits    int
	backoff  httpx.Backoff
	batches  int // Config.MaxBatches
	restarts int // Config.MaxFullRestarts
	log      *slog.Logger
	obs      httpx.Observer

	disc *discovery // nil: no service discovery
}

// quotable is a URL that an error may repeat: empty when it may hold a
// password.
func quotable(u string) string {
	if strings.Contains(u, "@") {
		return ""
	}
	return u
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
			return nil, &sources.SettingError{Setting: "VPP_SERVICE_CONFIG_URL", Value: quotable(cfg.ServiceConfigURL), Err: errors.New("not an http(s) URL")}
		}
		disc = d
	}
	// With discovery the base URL is not used; an empty one is fine.
	if disc == nil || base != "" {
		if !httpURL(base) {
			return nil, &sources.SettingError{Setting: "VPP_BASE_URL", Value: quotable(cfg.BaseURL), Err: errors.New("not an http(s) URL")}
		}
	}
	tok := strings.TrimSpace(cfg.SToken)
	if tok == "" {
		return nil, &sources.SettingError{Setting: "VPP_STOKEN", Err: errors.New("the sToken is empty")}
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
		base:     base,
		sToken:   tok,
		redactor: redact.New(tok, InnerToken(tok)).WithMarker("[sToken]"),
		token:    info,
		tokenOK:  terr == nil,
		hc:       httpx.Observe(&hc, cfg.Observer),
		maxBody:  cfg.MaxBodyBytes,
		attempts: cfg.MaxAttempts,
		pause:    cfg.InternalErrorPause,
		waits:    cfg.InternalErrorWaits,
		backoff:  cfg.Backoff,
		batches:  cfg.MaxBatches,
		restarts: cfg.MaxFullRestarts,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		disc:     disc,
	}
	if !c.tokenOK {
		c.token = TokenInfo{}
	}
	c.defaults()
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("source", c.name)
	return c, nil
}

// defaults fills in what the Config left at zero.
func (c *Client) defaults() {
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
	if c.batches <= 0 {
		c.batches = DefaultMaxBatches
	}
	switch {
	case c.restarts == 0:
		c.restarts = DefaultMaxFullRestarts
	case c.restarts < 0:
		c.restarts = 0
	}
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
// cursor Apple no longer accepts becomes a full listing, and a full listing
// Apple cannot continue is started again (see fullListing).
func (c *Client) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	var all sources.Collector
	snap, err := c.Stream(ctx, req, &all)
	if err != nil {
		return sources.Snapshot{}, err
	}
	snap.Users = all.Users
	return snap, nil
}

// Stream is Snapshot page by page: each batch's users go to out as it
// arrives, and a listing that starts again (a refused token, a batch
// Apple will not continue) says so with out.Restart. The Snapshot it
// returns has no Users.
func (c *Client) Stream(ctx context.Context, req sources.Request, out sources.Pages) (sources.Snapshot, error) {
	if req.Cursor != "" && !req.Full {
		snap, err := c.list(ctx, false, req.Cursor, out)
		ae, restart := restartsFull(err)
		if !restart {
			return snap, err
		}
		c.log.WarnContext(ctx, "vpp sinceModifiedToken not accepted, restarting as a full sync", "error_number", ae.Number)
		out.Restart()
	}
	return c.fullListing(ctx, out)
}

// restartsFull returns the APIError in err when it asks for a full sync.
func restartsFull(err error) (*APIError, bool) {
	var ae *APIError
	if err != nil && errors.As(err, &ae) && ae.RestartsFull() {
		return ae, true
	}
	return nil, false
}

// fullListing lists every user. Apple may refuse to continue a listing
// (9629, 9633) at any batch, and the only way on is a new listing from the
// first batch. That is bounded by c.restarts, so that a server refusing
// every time fails the run instead of holding the source, and paced by the
// backoff so that the restarts do not hammer a struggling service.
func (c *Client) fullListing(ctx context.Context, out sources.Pages) (sources.Snapshot, error) {
	for restarts := 0; ; restarts++ {
		if restarts > 0 {
			out.Restart()
		}
		snap, err := c.list(ctx, true, "", out)
		ae, restart := restartsFull(err)
		if !restart {
			return snap, err
		}
		if restarts >= c.restarts {
			return sources.Snapshot{}, fmt.Errorf("source %s: full listing cannot be finished, giving up after %d restarts from the beginning: %w",
				c.name, restarts, err)
		}
		delay := c.backoff.Delay(restarts+1, 0)
		c.log.WarnContext(ctx, "vpp full listing cannot be continued, restarting it from the beginning",
			"error_number", ae.Number, "restart", restarts+1, "max_restarts", c.restarts, "delay", delay)
		if err := httpx.Sleep(ctx, delay); err != nil {
			return sources.Snapshot{}, fmt.Errorf("source %s: full listing: %w", c.name, err)
		}
	}
}

type requestBody struct {
	SToken             string `json:"sToken"`
	BatchToken         string `json:"batchToken,omitempty"`
	SinceModifiedToken string `json:"sinceModifiedToken,omitempty"`
	IncludeRetired     int    `json:"includeRetired,omitempty"`
}

func (c *Client) list(ctx context.Context, full bool, cursor string, out sources.Pages) (sources.Snapshot, error) {
	snap := sources.Snapshot{Complete: full}
	body := requestBody{SToken: c.sToken}
	if full {
		body.IncludeRetired = 1
	} else {
		body.SinceModifiedToken = cursor
	}
	p := pager{source: c.name, ceiling: int64(c.batches), seen: map[int64]int{}}
	for batch := 1; ; batch++ {
		resp, err := c.fetchBatch(ctx, batch, body)
		if err != nil {
			return sources.Snapshot{}, err
		}
		snap.Pages = batch
		if err := p.add(batch, resp); err != nil {
			return sources.Snapshot{}, err
		}
		users := make([]events.User, len(resp.Users))
		for i, u := range resp.Users {
			users[i] = c.normalise(u)
		}
		resp.Users = nil
		if err := out.Page(users); err != nil {
			return sources.Snapshot{}, err
		}
		c.log.DebugContext(ctx, "vpp batch fetched", "batch", batch, "users", len(users), "total_batches", p.total)
		if resp.SinceModifiedToken != "" {
			// Only the final batch carries it, even when that batch is empty.
			snap.Cursor = resp.SinceModifiedToken
			return snap, nil
		}
		if resp.BatchToken == body.BatchToken {
			return sources.Snapshot{}, fmt.Errorf("source %s: batch %d: same batchToken returned twice in a row: %w", c.name, batch, ErrPaging)
		}
		if err := p.another(batch); err != nil {
			return sources.Snapshot{}, err
		}
		body.BatchToken = resp.BatchToken
		// The batchToken carries the listing's settings; Apple wants
		// nothing else beside it.
		body.SinceModifiedToken = ""
	}
}

// pager keeps what one listing has announced and delivered so far, to find
// duplicate users and to know when a listing has run on too long.
type pager struct {
	source   string
	ceiling  int64         // Config.MaxBatches
	seen     map[int64]int // userId → batch it came in
	total    int64         // totalBatchCount; 0 = not announced (Apple often sends "0")
	count    int64         // totalCount, sent with the first batch only
	hasCount bool
	largest  int64 // most users in one batch so far
	users    int64 // users so far
}

// add takes in one batch's users and announcements.
func (p *pager) add(batch int, resp *response) error {
	for i, u := range resp.Users {
		if b, dup := p.seen[u.UserID]; dup {
			return &sources.DecodeError{Source: p.source, Page: batch,
				Field: fmt.Sprintf("users[%d].userId", i),
				Err:   fmt.Errorf("duplicate userId %d, already in batch %d", u.UserID, b)}
		}
		p.seen[u.UserID] = batch
	}
	if resp.TotalBatchCount > 0 {
		p.total = resp.TotalBatchCount
	}
	if resp.HasTotalCount && !p.hasCount {
		p.count, p.hasCount = resp.TotalCount, true
	}
	p.users += int64(len(resp.Users))
	p.largest = max(p.largest, int64(len(resp.Users)))
	return nil
}

// another returns an error wrapping ErrPaging when the listing may not
// take a batch after batch.
func (p *pager) another(batch int) error {
	limit, basis := p.limit()
	if int64(batch) < limit {
		return nil
	}
	return fmt.Errorf("source %s: batch %d: the listing goes on, but %s allows at most %d batches: %w",
		p.source, batch, basis, limit, ErrPaging)
}

// limit is the most batches the listing may take and what that rests on.
// totalBatchCount, when Apple announces one, is exact. Without it, Apple's
// estimate totalCount (or the users delivered, when more) at the largest
// batch size seen gives the batches expected; the margin lets batches be
// smaller than the largest and totalCount be low. MaxBatches bounds
// everything.
func (p *pager) limit() (int64, string) {
	limit := p.ceiling
	basis := "MaxBatches (without totalBatchCount or totalCount to go by)"
	switch {
	case p.total > 0:
		if p.total < limit {
			limit, basis = p.total, fmt.Sprintf("totalBatchCount %d", p.total)
		}
	case p.hasCount:
		n, size := max(p.count, p.users), max(p.largest, 1)
		expected := (n + size - 1) / size
		if capped := batchMargin*expected + spareBatches; capped < limit {
			limit = capped
			basis = fmt.Sprintf("totalCount %d in batches of up to %d users (%d batches expected, totalBatchCount absent or 0)",
				p.count, size, expected)
		}
	}
	return limit, basis
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

// call is one logical request to a VPP service, which fetch sends and
// retries until it is answered.
type call struct {
	svc     service
	where   string // "batch 3" or "lookup of user 42": named in errors and logs
	payload []byte // holds the sToken: never in an error or a log
	// answer reads the body of a 2xx answer, keeping what it needs. It
	// returns what do returns: retryError and the server's wait for an
	// answer worth another attempt, an error wrapping *APIError for status
	// -1, any other error for an answer that cannot be used.
	answer func(raw []byte, floor time.Duration) (time.Duration, error)
}

// fetchBatch gets one batch of a listing. The response it returns has status
// 0 and at least one token.
func (c *Client) fetchBatch(ctx context.Context, batch int, body requestBody) (*response, error) {
	where := fmt.Sprintf("batch %d", batch)
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("source %s: %s: encode request: %w", c.name, where, err)
	}
	var resp *response
	err = c.fetch(ctx, call{svc: usersService, where: where, payload: payload,
		answer: func(raw []byte, floor time.Duration) (time.Duration, error) {
			var err error
			resp, floor, err = c.readBatch(batch, where, raw, floor)
			return floor, err
		}})
	return resp, err
}

// readBatch reads a 2xx getVPPUsersSrv answer.
func (c *Client) readBatch(batch int, where string, raw []byte, floor time.Duration) (*response, time.Duration, error) {
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
		floor, err := c.apiFailure(where, resp.ErrorNumber, resp.ErrorMessage, floor)
		return nil, floor, err
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

// apiFailure turns a status -1 answer into do's result: retryError with the
// server's wait for what is worth another attempt (9603, 9644, 9646), the
// wait and the *APIError for 9617, which fetch follows, and the *APIError
// alone otherwise.
func (c *Client) apiFailure(where string, number int64, message string, floor time.Duration) (time.Duration, error) {
	ae := &APIError{Number: int(number), Message: c.scrub(message)}
	switch {
	case ae.retryable():
		return floor, retryError{ae}
	case ae.Number == ErrURLMoved:
		return floor, fmt.Errorf("source %s: %s: %w", c.name, where, ae)
	}
	return 0, fmt.Errorf("source %s: %s: %w", c.name, where, ae)
}

// fetch sends k until it is answered, retrying what is worth retrying.
//
// Retries: 9603 (internal error) gets InternalErrorBackoffs attempts with
// exponential backoff, then up to c.waits more, c.pause apart; any other
// retryable failure (9644, 9646, 408/429/5xx/3xx, transport errors, a batch
// without tokens) counts against c.attempts. No wait is ever shorter than a
// Retry-After the server sent. 9617 (URL moved) re-reads the service
// configuration and retries once, without waiting.
func (c *Client) fetch(ctx context.Context, k call) error {
	var (
		st    retryState
		moved bool // 9617 already followed
	)
	for attempt := 1; ; attempt++ {
		endpoint, floor, err := c.endpoint(ctx, k.svc, k.where)
		if err == nil {
			floor, err = c.do(ctx, k, endpoint)
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("source %s: %s: %w", c.name, k.where, ctx.Err())
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Number == ErrURLMoved {
			if err := c.followMove(ctx, k, err, moved, endpoint, floor, attempt); err != nil {
				return err
			}
			moved = true
			continue
		}
		var retry retryError
		if !errors.As(err, &retry) {
			return err
		}
		delay, level, err := c.nextDelay(ctx, &st, k.where, attempt, floor, retry.err)
		if err != nil {
			return err
		}
		c.log.Log(ctx, level, "vpp request failed, retrying", "request", k.where, "attempt", attempt, "delay", delay, "error", retry.err)
		if c.obs != nil {
			c.obs.Retry()
		}
		if err := httpx.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("source %s: %s: %w", c.name, k.where, err)
		}
	}
}

// followMove handles a 9617 answer (err) from endpoint: without discovery,
// or when it comes back after the configuration was re-read, it is the
// final error; otherwise the configuration is forgotten, to be read again
// by the next attempt.
func (c *Client) followMove(ctx context.Context, k call, err error, moved bool, endpoint string, floor time.Duration, attempt int) error {
	switch {
	case c.disc == nil:
		return fmt.Errorf("%w; Apple moved %s: set VPP_SERVICE_CONFIG_URL (Apple's is %s) so that rollcall follows it", err, k.svc, DefaultServiceConfigURL)
	case moved:
		return fmt.Errorf("%w (again after re-reading the service configuration)", err)
	}
	c.log.WarnContext(ctx, "vpp "+k.svc.String()+" URL moved (9617), re-reading the service configuration", "request", k.where, "attempt", attempt)
	c.disc.invalidate(endpoint)
	if err := httpx.Sleep(ctx, floor); err != nil {
		return fmt.Errorf("source %s: %s: %w", c.name, k.where, err)
	}
	return nil
}

// retryState counts the failed attempts of one call.
type retryState struct {
	failures int // retryable failures other than 9603
	internal int // 9603 answers
}

// nextDelay counts lastErr, a retryable failure of attempt, and returns the
// wait before the next attempt and the level to log the failure at, or the
// final error once the attempts are used up.
func (c *Client) nextDelay(ctx context.Context, st *retryState, where string, attempt int, floor time.Duration, lastErr error) (time.Duration, slog.Level, error) {
	var ae *APIError
	if !errors.As(lastErr, &ae) || ae.Number != ErrInternal {
		st.failures++
		if st.failures >= c.attempts {
			return 0, 0, fmt.Errorf("source %s: %s: giving up after %d attempts: %w", c.name, where, attempt, lastErr)
		}
		return c.backoff.Delay(st.failures, floor), quietFirst(st.failures, floor), nil
	}
	st.internal++
	switch {
	case st.internal < InternalErrorBackoffs:
		return c.backoff.Delay(st.internal, floor), quietFirst(st.internal, floor), nil
	case st.internal-InternalErrorBackoffs < c.waits:
		// Apple: after five failures, retry minutes apart.
		delay := max(c.pause, floor)
		c.log.WarnContext(ctx, "vpp internal error (9603) keeps coming back, pausing before the next attempt as Apple asks",
			"request", where, "internal_errors", st.internal, "pause", delay,
			"pauses_left", c.waits-(st.internal-InternalErrorBackoffs)-1)
		return delay, slog.LevelWarn, nil
	}
	return 0, 0, fmt.Errorf("source %s: %s: giving up after %d attempts (%d internal errors, %d pauses of %v): %w",
		c.name, where, attempt, st.internal, c.waits, c.pause, lastErr)
}

// quietFirst logs a first failure that asked for no wait at DEBUG: single
// hiccups are routine and would drown the warnings that matter.
func quietFirst(n int, floor time.Duration) slog.Level {
	if n == 1 && floor == 0 {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// retryError marks a failure worth another attempt of the same request.
type retryError struct{ err error }

func (e retryError) Error() string { return e.err.Error() }
func (e retryError) Unwrap() error { return e.err }

// do makes one attempt of k at endpoint and hands a 2xx body to k.answer. A
// retryable failure comes back as retryError with the least wait the server
// asked for; so does 9617, as a plain error.
func (c *Client) do(ctx context.Context, k call, endpoint string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(k.payload))
	if err != nil {
		// The message of url.Parse quotes the URL, which may come from the
		// service configuration.
		return 0, fmt.Errorf("source %s: %s: build request: invalid %s URL", c.name, k.where, k.svc)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, retryError{httpx.StripURL("post "+k.svc.String(), err)}
	}
	defer res.Body.Close()
	floor, _ := httpx.RetryAfter(res.Header, time.Now())

	if res.StatusCode < 200 || res.StatusCode > 299 {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		se := &httpx.StatusError{Code: res.StatusCode, RetryAfter: floor}
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			// Apple may answer throttling with a 3xx and Retry-After
			// (SPEC §1.1): retried as throttling, never followed (the
			// request carries the sToken); the error says where it
			// pointed.
			return floor, retryError{redirectError(res, se)}
		}
		if httpx.Classify(res.StatusCode) == httpx.Retry {
			return floor, retryError{se}
		}
		return 0, fmt.Errorf("source %s: %s: %w", c.name, k.where, se)
	}
	raw, err := httpx.ReadBody(res.Body, c.maxBody)
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return 0, fmt.Errorf("source %s: %s: %w", c.name, k.where, err)
		}
		return floor, retryError{&httpx.TransportError{Op: "read " + k.svc.String() + " response", Err: err}}
	}
	return k.answer(raw, floor)
}

// redirectError names a 3xx answer's status and where its Location points
// (scheme and host only: the path and query may carry a token).
func redirectError(res *http.Response, se *httpx.StatusError) error {
	scheme, host := httpx.RedirectTarget(res)
	if host == "" {
		return fmt.Errorf("%w: a redirect without a usable location, not followed", se)
	}
	return fmt.Errorf("%w: a redirect to %s://%s, not followed because the request carries the sToken; "+
		"retried as throttling; if Apple's service has moved, check VPP_BASE_URL", se, scheme, host)
}

// scrub makes a server's error message safe to quote: free of the sToken,
// which a server might echo back (escaped, too), and of control characters,
// and at most MessageLimit bytes.
func (c *Client) scrub(msg string) string {
	return c.redactor.Excerpt(msg, MessageLimit)
}

// InnerToken is the token field inside the sToken s, the secret proper, or
// "" when s does not decode or the field is too short to be told from
// ordinary text.
func InnerToken(s string) string {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		raw, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		var t struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(raw, &t) != nil || len(t.Token) < 8 {
			return ""
		}
		return t.Token
	}
	return ""
}
