package vpp2

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/rollcall/rollcall/internal/redact"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// Apple's statuses, as v2 spells them.
const (
	statusRegistered = "registered"
	statusAssociated = "associated"
	statusRetired    = "retired"
	// statusDeleted is a legacy state: retired, its Apple Account since
	// associated with a new entry of the same clientUserId. rollcall
	// takes it for retired.
	statusDeleted = "deleted"
	// statusCreated is what Apple's "Managing users" calls a new entry,
	// apparently meaning Registered; taken as registered.
	statusCreated = "created"
)

// active reports whether an entry is a key's active entry (Registered or
// Associated; any status rollcall does not know counts too, so that it is
// never taken for a retirement).
func active(status string) bool {
	switch strings.ToLower(status) {
	case statusRetired, statusDeleted:
		return false
	}
	return true
}

// normalStatus is the status rollcall records for an entry.
func normalStatus(status string) string {
	switch s := strings.ToLower(status); s {
	case statusDeleted:
		return events.StatusRetired
	case statusCreated:
		return events.StatusRegistered
	default:
		return s
	}
}

// rank orders the retired entries of one key, so that the one that stands
// for the key is the same whatever order and pages they come in: Retired
// before Deleted, then by e-mail, idHash and the record's bytes. v2 gives
// no time of retirement, so "the latest" cannot be chosen; a stable choice
// is what keeps full and incremental runs from flapping between them.
type rank struct {
	status, email, idHash string
	raw                   [8]byte
}

func rankOf(e entry) rank {
	sum := sha256.Sum256(e.Raw)
	r := rank{status: strings.ToLower(e.Status), email: e.Email, idHash: e.IDHash}
	copy(r.raw[:], sum[:8])
	return r
}

func (a rank) less(b rank) bool {
	if a.status != b.status {
		return a.status > b.status // "retired" before "deleted"
	}
	if a.email != b.email {
		return a.email < b.email
	}
	if a.idHash != b.idHash {
		return a.idHash < b.idHash
	}
	return bytes.Compare(a.raw[:], b.raw[:]) < 0
}

// slot is what a walk has delivered for one key. Most keys are active:
// only a retired entry's rank is kept, so that a walk over a large
// location holds little more than its keys.
type slot struct {
	rank *rank // of the retired entry delivered; nil when active
	page int   // the page it was delivered with
}

func newSlot(e entry, page int) slot {
	if active(e.Status) {
		return slot{page: page}
	}
	r := rankOf(e)
	return slot{rank: &r, page: page}
}

// merger turns a walk's entries into one user per key: the active entry
// wins over any retired one, wherever each is listed; of retired entries
// the lowest rank wins. In a full walk a key's entries may be on
// different pages, so a better entry on a later page is delivered with
// Pages.Replace. In an incremental walk a key seen only retired is held
// back (held): whether the user is retired needs a look at all its
// entries (see Client.settle).
type merger struct {
	c    *Client
	full bool
	seen map[string]slot
	held map[string]entry
}

func newMerger(c *Client, full bool) *merger {
	return &merger{c: c, full: full, seen: map[string]slot{}, held: map[string]entry{}}
}

// page takes one page's entries and hands what it decides to out.
func (m *merger) page(entries []entry, pageNo int, out sources.Pages) error {
	users := make([]events.User, 0, len(entries))
	at := map[string]int{} // key → place in users, for a key twice on this page
	var replace []events.User
	for i, e := range entries {
		key := e.ClientUserID
		s, seen := m.seen[key]
		isActive := active(e.Status)
		switch {
		case seen && s.rank == nil && isActive:
			return &sources.DecodeError{Source: m.c.name, Page: pageNo, Field: fmt.Sprintf("users[%d].clientUserId", i),
				Err: fmt.Errorf("a second active entry for clientUserId %q (the first on page %d); Apple allows one", redact.Excerpt(key, 64), s.page)}
		case seen && (s.rank == nil || !isActive && !rankOf(e).less(*s.rank)):
			continue // what was delivered stands
		case seen:
			m.seen[key] = newSlot(e, s.page)
			if s.page == pageNo {
				users[at[key]] = m.c.normalise(e)
			} else {
				replace = append(replace, m.c.normalise(e))
			}
		case !isActive && !m.full:
			if h, ok := m.held[key]; !ok || rankOf(e).less(rankOf(h)) {
				m.held[key] = e
			}
		default:
			delete(m.held, key)
			m.seen[key] = newSlot(e, pageNo)
			at[key] = len(users)
			users = append(users, m.c.normalise(e))
		}
	}
	if err := out.Page(users); err != nil {
		return err
	}
	for _, u := range replace {
		if err := out.Replace(u); err != nil {
			return err
		}
	}
	return nil
}

// resolve is the state of a key from all its entries (a lookup's answer):
// the active entry, else the lowest-ranked retired one; ok is false when
// there are none. Two active entries are an error.
func resolve(entries []entry) (e entry, ok bool, err error) {
	for _, x := range entries {
		switch {
		case !ok:
			e, ok = x, true
		case active(x.Status) && active(e.Status):
			return entry{}, false, fmt.Errorf("two active entries for clientUserId %q; Apple allows one", redact.Excerpt(x.ClientUserID, 64))
		case active(x.Status), !active(e.Status) && rankOf(x).less(rankOf(e)):
			e = x
		}
	}
	return e, ok, nil
}

// normalise turns an entry into rollcall's user: keyed by clientUserId,
// with the status rollcall records and the record without its invite
// code (events.ScrubRaw).
func (c *Client) normalise(e entry) events.User {
	raw, err := events.ScrubRaw(e.Raw)
	if err != nil {
		raw = nil // cannot happen: the entry decoded as an object
	}
	return events.User{
		Source:       c.name,
		SourceKind:   events.KindVPP2,
		ID:           e.ClientUserID,
		Email:        e.Email,
		ClientUserID: e.ClientUserID,
		Status:       normalStatus(e.Status),
		Raw:          raw,
	}
}
