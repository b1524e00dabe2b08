package vpp2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
)

// getPage sends one Get Users request (query q) until it is answered,
// retrying what is worth retrying, and returns the decoded page. pageNo
// is the 1-based page of the walk, named in errors. No wait is ever
// shorter than a Retry-After the server sent.
func (c *Client) getPage(ctx context.Context, q url.Values, where string, pageNo int) (*page, error) {
	for failures := 0; ; {
		endpoint := c.usersURL(ctx)
		p, err := c.do(ctx, endpoint, q, where, pageNo)
		if err == nil {
			if p.Skipped > 0 {
				// No single record blocks a source (SPEC §1.3): an entry
				// without a key cannot be carried, and is left out.
				c.log.WarnContext(ctx, "vpp2 entries without a clientUserId skipped: they cannot be keyed",
					"request", where, "page", pageNo, "skipped", p.Skipped)
			}
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("source %s: %s: %w", c.name, where, ctx.Err())
		}
		var retry retryError
		if !errors.As(err, &retry) {
			return nil, err
		}
		failures++
		if failures >= c.attempts {
			return nil, fmt.Errorf("source %s: %s: giving up after %d attempts: %w", c.name, where, failures, retry.err)
		}
		delay := c.backoff.Delay(failures, retry.floor)
		c.log.WarnContext(ctx, "vpp2 request failed, retrying", "request", where, "attempt", failures, "delay", delay, "error", retry.err)
		if c.obs != nil {
			c.obs.Retry()
		}
		if err := httpx.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("source %s: %s: %w", c.name, where, err)
		}
	}
}

// acquire takes one of the MaxInFlight request slots and waits for the
// rate limit; release gives the slot back.
func (c *Client) acquire(ctx context.Context) (release func(), err error) {
	select {
	case c.inFlight <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := c.limiter.wait(ctx); err != nil {
		<-c.inFlight
		return nil, err
	}
	return func() { <-c.inFlight }, nil
}

// do makes one attempt. A retryable failure comes back as retryError.
func (c *Client) do(ctx context.Context, endpoint string, q url.Values, where string, pageNo int) (*page, error) {
	target := endpoint
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("source %s: %s: build request: invalid users URL", c.name, where)
	}
	req.Header.Set("Authorization", "Bearer "+c.sToken)
	req.Header.Set("Accept", "application/json")
	release, err := c.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("source %s: %s: %w", c.name, where, err)
	}
	defer release()
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, retryError{err: httpx.StripURL("get users", err)}
	}
	defer res.Body.Close()
	floor, _ := httpx.RetryAfter(res.Header, time.Now())
	if res.StatusCode >= 300 && res.StatusCode < 400 {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		return nil, fmt.Errorf("source %s: %s: %w", c.name, where, redirectError(res))
	}
	raw, err := httpx.ReadBody(res.Body, c.maxBody)
	if err != nil {
		if errors.Is(err, httpx.ErrBodyTooLarge) {
			return nil, fmt.Errorf("source %s: %s: %w", c.name, where, err)
		}
		return nil, retryError{err: &httpx.TransportError{Op: "read users response", Err: err}, floor: floor}
	}
	ok := res.StatusCode >= 200 && res.StatusCode <= 299
	p, derr := decodePage(raw)
	switch {
	case derr != nil && ok:
		return nil, c.decodeError(pageNo, derr)
	case derr != nil && (res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden):
		// A refused credential without Apple's body (a proxy in front):
		// still a credential an operator must fix.
		return nil, fmt.Errorf("source %s: %s: %w", c.name, where, &APIError{HTTPStatus: res.StatusCode})
	case derr != nil:
		// Not an ErrorResponse (a proxy's page): the status decides.
		se := &httpx.StatusError{Code: res.StatusCode, RetryAfter: floor}
		if httpx.Classify(res.StatusCode) == httpx.Retry {
			return nil, retryError{err: se, floor: floor}
		}
		return nil, fmt.Errorf("source %s: %s: %w", c.name, where, se)
	case p.ErrorNumber != 0:
		return nil, c.apiFailure(where, res.StatusCode, p, floor)
	case !ok:
		// A non-2xx status with a body that reads as a page is still a
		// failure: never an empty directory.
		se := &httpx.StatusError{Code: res.StatusCode, RetryAfter: floor}
		if httpx.Classify(res.StatusCode) == httpx.Retry {
			return nil, retryError{err: se, floor: floor}
		}
		return nil, fmt.Errorf("source %s: %s: %w", c.name, where, se)
	}
	return p, nil
}

// apiFailure turns an ErrorResponse into do's result.
func (c *Client) apiFailure(where string, status int, p *page, floor time.Duration) error {
	ae := &APIError{HTTPStatus: status, Number: int(p.ErrorNumber), Message: c.scrub(p.ErrorMessage)}
	err := fmt.Errorf("source %s: %s: %w", c.name, where, ae)
	switch {
	case ae.retryable():
		return retryError{err: err, floor: floor}
	case ae.restartsWalk():
		return restartError{err: err}
	}
	return err
}

// decodeError names the source, page and field of a body that does not
// decode.
func (c *Client) decodeError(pageNo int, err error) error {
	de := &sources.DecodeError{Source: c.name, Page: pageNo, Err: err}
	var fe *fieldError
	if errors.As(err, &fe) {
		de.Field, de.Err = fe.Field, fe.Err
	}
	return de
}

// redirectError names a 3xx answer's status and where it pointed (scheme
// and host only): never followed, because the request carries the sToken.
func redirectError(res *http.Response) error {
	se := &httpx.StatusError{Code: res.StatusCode}
	scheme, host := httpx.RedirectTarget(res)
	if host == "" {
		return fmt.Errorf("%w: a redirect without a usable location, not followed", se)
	}
	return fmt.Errorf("%w: a redirect to %s://%s, not followed because the request carries the sToken; check VPP2_BASE_URL", se, scheme, host)
}

// pageQuery is the query of page idx of a walk.
func pageQuery(base url.Values, idx int64) url.Values {
	q := url.Values{}
	for k, v := range base {
		q[k] = v
	}
	if idx > 0 {
		q.Set("pageIndex", strconv.FormatInt(idx, 10))
	}
	return q
}
