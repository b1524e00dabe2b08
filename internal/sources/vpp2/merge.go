package vpp2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
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
	rank    *rank // of the retired entry delivered; nil when active
	page    int   // the page it was delivered with
	retired int   // the key's retired entries listed so far
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
// Pages.Replace; an active user is delivered with the count of its key's
// retired entries (events.V2Entries), and one whose key has a retired
// entry on a later page is delivered again by refetch. In an incremental
// walk a key seen only retired is held back (held), and a key seen both
// active and retired is marked (mixed): whether the user is retired, and
// how many retired entries its key has, needs a look at all its entries
// (see Client.settle).
type merger struct {
	c     *Client
	full  bool
	seen  map[string]slot
	held  map[string]entry
	mixed map[string]struct{}
	late  map[string]int // active key → its page, for a key with a retired entry on a later page
}

func newMerger(c *Client, full bool) *merger {
	return &merger{c: c, full: full, seen: map[string]slot{}, held: map[string]entry{}, mixed: map[string]struct{}{}, late: map[string]int{}}
}

// page takes one page's entries and hands what it decides to out.
func (m *merger) page(entries []entry, pageNo int, out sources.Pages) error {
	users := make([]events.User, 0, len(entries))
	at := map[string]int{} // key → place in users, for a key twice on this page
	var replace []events.User
	rat := map[string]int{} // key → place in replace
	for i, e := range entries {
		key := e.ClientUserID
		s, seen := m.seen[key]
		isActive := active(e.Status)
		if seen && !isActive {
			s.retired++
			m.seen[key] = s
		}
		switch {
		case seen && s.rank == nil && isActive:
			return &sources.DecodeError{Source: m.c.name, Page: pageNo, Field: fmt.Sprintf("users[%d].clientUserId", i),
				Err: fmt.Errorf("a second active entry for clientUserId %q (the first on page %d); Apple allows one", redact.Excerpt(key, 64), s.page)}
		case seen && s.rank == nil:
			// A retired entry beside the active one delivered: the active
			// entry stands, with one more retired entry to its key.
			if !m.full {
				m.mixed[key] = struct{}{}
				continue
			}
			if j, ok := rat[key]; ok {
				replace[j].Entries.Retired = s.retired
			} else if j, ok := at[key]; ok && s.page == pageNo {
				users[j].Entries.Retired = s.retired
			} else {
				m.late[key] = s.page
			}
		case seen && !isActive && !rankOf(e).less(*s.rank):
			continue // what was delivered stands
		case seen:
			n := newSlot(e, s.page)
			n.retired = s.retired
			u := m.c.user(e, s.retired, m.full)
			if s.page == pageNo {
				users[at[key]] = u
			} else {
				if isActive {
					n.page = pageNo // where the active entry is
				}
				rat[key] = len(replace)
				replace = append(replace, u)
			}
			m.seen[key] = n
		case !isActive && !m.full:
			if h, ok := m.held[key]; !ok || rankOf(e).less(rankOf(h)) {
				m.held[key] = e
			}
		default:
			if _, ok := m.held[key]; ok {
				// Retired entries earlier in this incremental walk.
				delete(m.held, key)
				m.mixed[key] = struct{}{}
			}
			n := newSlot(e, pageNo)
			if !isActive {
				n.retired = 1
			}
			m.seen[key] = n
			at[key] = len(users)
			users = append(users, m.c.user(e, 0, m.full))
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

// refetch delivers again, with the count of their keys' retired entries,
// the active users of a full walk whose keys have retired entries on a
// later page than theirs: it fetches their pages again (with the walk's
// versionId, so the same pages) and hands them to out.Replace.
func (m *merger) refetch(ctx context.Context, version string, out sources.Pages) error {
	byPage := map[int]map[string]bool{}
	for key, p := range m.late {
		if byPage[p] == nil {
			byPage[p] = map[string]bool{}
		}
		byPage[p][key] = true
	}
	pages := slices.Sorted(maps.Keys(byPage))
	for _, pageNo := range pages {
		keys := byPage[pageNo]
		p, err := m.c.getPage(ctx, pageQuery(url.Values{}, int64(pageNo-1)), fmt.Sprintf("page %d again", pageNo), pageNo)
		if err != nil {
			return err
		}
		if p.VersionID != "" && p.VersionID != version || p.CurrentPageIndex >= 0 && p.CurrentPageIndex != int64(pageNo-1) {
			return restartError{fmt.Errorf("source %s: page %d fetched again: the listing changed since page 1", m.c.name, pageNo)}
		}
		found := 0
		for _, e := range p.Users {
			if !active(e.Status) || !keys[e.ClientUserID] {
				continue
			}
			found++
			if err := out.Replace(m.c.user(e, m.seen[e.ClientUserID].retired, true)); err != nil {
				return err
			}
		}
		if found != len(keys) {
			return restartError{fmt.Errorf("source %s: page %d fetched again: the listing changed since page 1", m.c.name, pageNo)}
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

// user is normalise with, for an active entry, the fingerprint of its
// key's entries: retired counts the key's retired entries when known
// (a full listing, a lookup), else the count is left to the recorded user.
func (c *Client) user(e entry, retired int, known bool) events.User {
	u := c.normalise(e)
	if active(e.Status) {
		if !known {
			retired = -1
		}
		u.Entries = &events.V2Entries{Retired: retired, Active: identity(e)}
	}
	return u
}

// identity tells an active entry from another of the same key: a hash of
// its status (in lower case), e-mail, idHash and invite code. A re-created
// user's new entry has a new invite code (and another status or idHash
// once associated); the invite code itself is never kept.
func identity(e entry) string {
	var stack [256]byte
	b := stack[:0]
	for _, v := range [...]string{strings.ToLower(e.Status), e.Email, e.IDHash, e.InviteCode} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// normalise turns an entry into rollcall's user: keyed by clientUserId,
// with the status rollcall records and the record without its invite
// code (events.ScrubRaw).
func (c *Client) normalise(e entry) events.User {
	raw := e.Raw
	if events.MayHoldSecret(raw) { // a registered user's invite code; rarely more
		var err error
		if raw, err = events.ScrubRaw(raw); err != nil {
			raw = nil // cannot happen: the entry decoded as an object
		}
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
