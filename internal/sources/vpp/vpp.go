// Package vpp is rollcall's client for Apple's legacy VPP getVPPUsersSrv
// endpoint: it pages through a full or incremental user listing, retries
// what Apple says is worth retrying, and turns the users into events.User.
//
// The sToken is a secret: it only ever travels in request bodies, and no
// error or log line of this package contains it.
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
// until an operator acts (a new sToken, a removed service): the poller
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

func (e *APIError) needsFullSync() bool {
	return e.Number == ErrBatchNotRecoverable || e.Number == ErrTokenNotApplicable
}

// Config configures a Client.
type Config struct {
	Name         string // source name, e.g. "vpp"
	BaseURL      string // e.g. https://vpp.itunes.apple.com/mdm
	SToken       string // secret
	HTTPClient   *http.Client
	MaxBodyBytes int64 // default DefaultMaxBodyBytes
	MaxAttempts  int   // per request, default DefaultMaxAttempts
	Backoff      httpx.Backoff
	Logger       *slog.Logger // nil: discard
}

// Client lists the users of one VPP location. It is safe for concurrent
// use, though the poller runs one Snapshot at a time per source.
type Client struct {
	name     string
	endpoint string
	sToken   string
	hc       *http.Client
	maxBody  int64
	attempts int
	backoff  httpx.Backoff
	log      *slog.Logger
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if !events.ValidSourceName(cfg.Name) {
		return nil, fmt.Errorf("vpp: invalid source name %q", cfg.Name)
	}
	base := strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vpp: source %s: base URL %q is not an http(s) URL", cfg.Name, cfg.BaseURL)
	}
	tok := strings.TrimSpace(cfg.SToken)
	if tok == "" {
		return nil, fmt.Errorf("vpp: source %s: sToken is empty", cfg.Name)
	}
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
		hc:       &hc,
		maxBody:  cfg.MaxBodyBytes,
		attempts: cfg.MaxAttempts,
		backoff:  cfg.Backoff,
		log:      cfg.Logger,
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.attempts <= 0 {
		c.attempts = DefaultMaxAttempts
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("source", c.name)
	return c, nil
}

// Name is the source name.
func (c *Client) Name() string { return c.name }

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
	if err != nil && !full && errors.As(err, &ae) && ae.needsFullSync() {
		c.log.Warn("vpp sinceModifiedToken not accepted, restarting as a full sync", "error_number", ae.Number)
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
		c.log.Debug("vpp batch fetched", "batch", batch, "users", len(resp.Users), "total_batches", total)
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

// fetch gets one batch, retrying what is worth retrying up to c.attempts
// times. The response it returns has status 0 and at least one token.
func (c *Client) fetch(ctx context.Context, batch int, body requestBody) (*response, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("source %s: batch %d: encode request: %w", c.name, batch, err)
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		resp, floor, err := c.do(ctx, batch, payload)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("source %s: batch %d: %w", c.name, batch, ctx.Err())
		}
		var retry retryError
		if !errors.As(err, &retry) {
			return nil, err
		}
		lastErr = retry.err
		if attempt >= c.attempts {
			return nil, fmt.Errorf("source %s: batch %d: giving up after %d attempts: %w", c.name, batch, attempt, lastErr)
		}
		delay := c.backoff.Delay(attempt, floor)
		level := slog.LevelDebug
		if attempt > 1 || floor > 0 {
			level = slog.LevelWarn
		}
		c.log.Log(ctx, level, "vpp request failed, retrying", "batch", batch, "attempt", attempt, "delay", delay, "error", lastErr)
		if err := httpx.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("source %s: batch %d: %w", c.name, batch, err)
		}
	}
}

// retryError marks a failure worth another attempt of the same request.
type retryError struct{ err error }

func (e retryError) Error() string { return e.err.Error() }
func (e retryError) Unwrap() error { return e.err }

// do makes one attempt. A retryable failure comes back as retryError with
// the least wait the server asked for.
func (c *Client) do(ctx context.Context, batch int, payload []byte) (*response, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(payload))
	if err != nil {
		return nil, 0, fmt.Errorf("source %s: batch %d: build request: %w", c.name, batch, err)
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
