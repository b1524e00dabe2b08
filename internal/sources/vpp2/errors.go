package vpp2

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Apple's error numbers for Get Users (Handling Error Responses).
const (
	ErrLoginRequired      = 9601 // 401: no usable sToken
	ErrInvalidArgument    = 9602 // 400: a bug on our side
	ErrInternal           = 9603 // 500: retry
	ErrTokenExpired       = 9621 // 401
	ErrInvalidToken       = 9622 // legacy; zentral sees it from v2 too
	ErrTokenRevoked       = 9625 // 401
	ErrServiceRemoved     = 9634 // 410
	ErrFacilitator        = 9637 // 403: a facilitator account's token
	ErrTooManyRequests    = 9646 // 429: back off
	ErrLegacyToken        = 9647 // 403: a token of the legacy API
	ErrInvalidPageIndex   = 9650 // 400: restart the walk
	ErrInvalidVersionID   = 9721 // 400: the cursor is gone: full sync
	ErrInvalidAuthHeader  = 9722 // 401
	ErrTemporarilyUnavail = 9729 // 503: retry, honouring Retry-After
)

// MessageLimit bounds APIError.Message, in bytes.
const MessageLimit = 300

// APIError is an ErrorResponse, whatever the HTTP status it came with.
// Message is Apple's errorMessage made safe to quote: without the sToken,
// control characters or line breaks, at most MessageLimit bytes.
type APIError struct {
	HTTPStatus int
	Number     int
	Message    string
}

func (e *APIError) Error() string {
	if e.Number == 0 {
		return fmt.Sprintf("vpp2 http status %d without an error number", e.HTTPStatus)
	}
	s := fmt.Sprintf("vpp2 error %d", e.Number)
	if e.HTTPStatus != 0 && e.HTTPStatus != http.StatusOK {
		s += fmt.Sprintf(" (http status %d)", e.HTTPStatus)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// StopsSource reports whether polling cannot succeed until an operator
// acts: a missing, expired, revoked or malformed token (9601, 9621, 9625,
// 9722, and 9622, which Apple's legacy API sends for an invalid token), a
// token v2 refuses (9637 facilitator, 9647 legacy), or the service gone
// (9634). The poller stops the source until its token file changes. A 401
// or 403 with a number not in Apple's table stops it too: retrying a
// refused credential only locks it out faster.
func (e *APIError) StopsSource() bool {
	switch e.Number {
	case ErrLoginRequired, ErrTokenExpired, ErrInvalidToken, ErrTokenRevoked, ErrInvalidAuthHeader,
		ErrFacilitator, ErrLegacyToken, ErrServiceRemoved:
		return true
	}
	return e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden
}

// retryable: Apple's throttling (9646), internal errors (9603),
// temporary unavailability (9729), and any number that came with a 5xx
// or 429.
func (e *APIError) retryable() bool {
	switch e.Number {
	case ErrInternal, ErrTooManyRequests, ErrTemporarilyUnavail:
		return true
	}
	return !e.StopsSource() && (e.HTTPStatus >= 500 || e.HTTPStatus == http.StatusTooManyRequests)
}

// restartsWalk: the page index is refused (9650): the walk starts again.
func (e *APIError) restartsWalk() bool { return e.Number == ErrInvalidPageIndex }

// fullSync: the cursor is refused (9721): an incremental run becomes a
// full one.
func (e *APIError) fullSync() bool { return e.Number == ErrInvalidVersionID }

// ErrPaging is wrapped by errors for listings that cannot be finished:
// pages that do not follow each other, more pages than announced or
// allowed, a versionId that keeps changing.
var ErrPaging = errors.New("inconsistent paging")

// ErrServiceConfig is wrapped by errors about an unusable service
// configuration answer.
var ErrServiceConfig = errors.New("unusable service configuration")

// retryError marks a failure worth another attempt of the same request,
// with the least wait the server asked for.
type retryError struct {
	err   error
	floor time.Duration
}

func (e retryError) Error() string { return e.err.Error() }
func (e retryError) Unwrap() error { return e.err }

// restartError asks for the walk to start again (9650).
type restartError struct{ err error }

func (e restartError) Error() string { return e.err.Error() }
func (e restartError) Unwrap() error { return e.err }

func asAPIError(err error) (*APIError, bool) {
	var ae *APIError
	ok := errors.As(err, &ae)
	return ae, ok
}
