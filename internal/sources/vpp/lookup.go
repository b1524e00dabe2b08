package vpp

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// statusDeleted is a user state that only getVPPUserSrv reports (listings
// leave such users out): the record is gone.
const statusDeleted = "Deleted"

type lookupBody struct {
	UserID int64  `json:"userId"`
	SToken string `json:"sToken"`
}

// LookupUser asks getVPPUserSrv whether the user with userId id, the
// decimal string rollcall keys VPP users by, is still there. It confirms an
// absence from a complete listing before the absence is published (SPEC
// §1.3).
//
// present is false only for an answer that says so: status 0 with the user
// in Apple's legacy state "Deleted", or status -1 with ErrUserNotFound. A
// user in any other state, Retired included, is present. Everything else is
// an error, never an absence, because the caller then falls back to a
// second complete snapshot: an id that is not a decimal userId
// (ErrInvalidUserID, no request made), failures that outlast their retries
// (transport, 5xx and 503 with Retry-After, 9603, 9644, 9646, retried as a
// listing's batches are), token errors (an *APIError whose StopsSource is
// true), any other error number, and an answer that does not decode, has no
// user or is about another user. Redirects are never followed.
func (c *Client) LookupUser(ctx context.Context, id string) (present bool, err error) {
	n, perr := strconv.ParseInt(id, 10, 64)
	if perr != nil || strconv.FormatInt(n, 10) != id {
		// The id is cut short: it comes from the caller and may be anything.
		return false, fmt.Errorf("source %s: lookup of user %.40q: %w", c.name, id, ErrInvalidUserID)
	}
	where := "lookup of user " + id
	payload, err := json.Marshal(lookupBody{UserID: n, SToken: c.sToken})
	if err != nil {
		return false, fmt.Errorf("source %s: %s: encode request: %w", c.name, where, err)
	}
	err = c.fetch(ctx, call{svc: userService, where: where, payload: payload,
		answer: func(raw []byte, floor time.Duration) (time.Duration, error) {
			var err error
			present, floor, err = c.readLookup(where, n, raw, floor)
			return floor, err
		}})
	if err != nil {
		return false, err
	}
	c.log.DebugContext(ctx, "vpp user looked up", "user_id", id, "present", present)
	return present, nil
}

// readLookup reads a 2xx getVPPUserSrv answer about user id.
func (c *Client) readLookup(where string, id int64, raw []byte, floor time.Duration) (bool, time.Duration, error) {
	a, err := decodeLookup(raw)
	if err != nil {
		return false, 0, fmt.Errorf("source %s: %s: %w", c.name, where, err)
	}
	switch a.Status {
	case 0:
	case -1:
		if a.ErrorNumber == ErrUserNotFound {
			return false, 0, nil
		}
		floor, err := c.apiFailure(where, a.ErrorNumber, a.ErrorMessage, floor)
		return false, floor, err
	default:
		return false, 0, fmt.Errorf("source %s: %s: field status: unknown status %d", c.name, where, a.Status)
	}
	switch {
	case a.User == nil:
		return false, 0, fmt.Errorf("source %s: %s: status 0 without a user", c.name, where)
	case a.User.UserID != id:
		// Not an answer to the question asked: neither presence nor absence.
		return false, 0, fmt.Errorf("source %s: %s: the answer is about user %d", c.name, where, a.User.UserID)
	}
	return !strings.EqualFold(a.User.Status, statusDeleted), 0, nil
}
