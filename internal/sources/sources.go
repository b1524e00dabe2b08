// Package sources holds what every directory source shares: the request and
// snapshot types the poller exchanges with a source, and the error that
// names the source, page and field of bad input. One sub-package per API
// (vpp, veeam) implements the clients; their fakes live in vpptest and
// veeamtest.
package sources

import (
	"fmt"
	"strings"

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
	// Users is the whole listing from Snapshot; a streamed listing
	// (Stream) leaves it nil: the users went to the Pages.
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
		return fmt.Sprintf("%s %q: %v", e.Setting, quotable(e.Value), e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Setting, e.Err)
}

// quotable is a setting's value as an error may quote it: a URL's query
// (…?key=…) and its user information (user:password@) may hold a secret,
// so both are cut, marked by "…".
func quotable(v string) string {
	v, _, cut := strings.Cut(v, "?")
	if cut {
		v += "?…"
	}
	// The user information ends at the last "@" before the path.
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		scheme, rest = "", v
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = "…@" + authority[i+1:]
	}
	if ok {
		return scheme + "://" + authority + path
	}
	return authority + path
}

func (e *SettingError) Unwrap() error { return e.Err }

// Pages receives a listing page by page, as it arrives, so that a run never
// holds a whole directory: a consumer keeps what it needs of each page (the
// users that changed) and lets the rest go.
type Pages interface {
	// Page takes one page's users, in listing order. The slice and the
	// users' Raw belong to the consumer from then on.
	Page(users []events.User) error
	// Replace takes a later copy of a user a page delivered (a listing
	// that moved under the pager): it supersedes that copy. A user no page
	// delivered yet is taken as new.
	Replace(u events.User) error
	// Restart says the listing starts again from its first page: every
	// page delivered so far is void.
	Restart()
}

// Collector is the Pages that keeps every user: a whole Snapshot.Users.
type Collector struct {
	Users []events.User
	index map[string]int // id → place in Users, built at the first Replace
}

// Page appends users.
func (c *Collector) Page(users []events.User) error {
	c.Users = append(c.Users, users...)
	if c.index != nil {
		for i := len(c.Users) - len(users); i < len(c.Users); i++ {
			c.index[c.Users[i].ID] = i
		}
	}
	return nil
}

// Replace puts u in the place of the earlier copy with its id, or appends
// it when there is none.
func (c *Collector) Replace(u events.User) error {
	if c.index == nil {
		c.index = make(map[string]int, len(c.Users))
		for i := range c.Users {
			c.index[c.Users[i].ID] = i
		}
	}
	if i, ok := c.index[u.ID]; ok {
		c.Users[i] = u
		return nil
	}
	c.index[u.ID] = len(c.Users)
	c.Users = append(c.Users, u)
	return nil
}

// Restart forgets every user.
func (c *Collector) Restart() { c.Users, c.index = nil, nil }
