// Package sources holds what every directory source shares: the request and
// snapshot types the poller exchanges with a source, and the error that
// names the source, page and field of bad input. One sub-package per API
// (vpp, veeam) implements the clients; their fakes live in vpptest and
// veeamtest.
package sources

import (
	"fmt"

	"github.com/rollcall/rollcall/pkg/events"
)

// Request asks a source for one snapshot.
type Request struct {
	// Cursor is the source's incremental position from the last complete run
	// (VPP's sinceModifiedToken); empty asks for everything.
	Cursor string
	// Full forces a full listing even when a cursor is known (VPP's periodic
	// full sync).
	Full bool
}

// Snapshot is what one run of a source saw.
type Snapshot struct {
	Users []events.User
	// Complete is true when Users is the whole directory, so that a known
	// user missing from it has been removed. Incremental listings are not.
	Complete bool
	// Cursor is the position to store once this run has been committed.
	Cursor string
	// Pages is how many pages (batches) the run fetched.
	Pages int
}

// DecodeError is bad input from an API: it names the source, the page and,
// where known, the field, so that an operator can find the record.
type DecodeError struct {
	Source string
	Page   int
	Field  string
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("source %s: page %d: field %s: %v", e.Source, e.Page, e.Field, e.Err)
	}
	return fmt.Sprintf("source %s: page %d: %v", e.Source, e.Page, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// SettingError is a setting a source client refuses. Setting is the
// environment variable that holds it, without the prefix a service may
// give it (VEEAM_BASE_URL, not EU_VEEAM_BASE_URL), so that the service can
// name the variable as the operator wrote it, once.
type SettingError struct {
	Setting string
	// Value is quoted in the message; empty when it may carry a secret.
	Value string
	Err   error
}

func (e *SettingError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("%s %q: %v", e.Setting, e.Value, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Setting, e.Err)
}

func (e *SettingError) Unwrap() error { return e.Err }
