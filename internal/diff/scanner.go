package diff

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// Scanner is Scan page by page (sources.Pages): it compares each user of a
// listing with Known as the page arrives and keeps only the users that are
// new or changed, so that a run holds the compact index, a mark per known
// user and the changes, never the whole directory.
type Scanner struct {
	source  string
	known   Marker
	keepAll bool

	changed []events.User
	place   map[string]int      // id → index in changed, built at the first Replace
	fresh   map[string]struct{} // users not known, for the duplicate check
	users   int                 // distinct users listed
	active  int                 // of which neither retired nor removed
}

var _ sources.Pages = (*Scanner)(nil)

// NewScanner starts a scan of a listing of source against known (nil: no
// user is known). With keepAll every user is kept, changed or not (a
// source's first listing, which becomes its baseline).
func NewScanner(source string, known Known, keepAll bool) *Scanner {
	if known == nil {
		known = prevKnown(nil)
	}
	m, ok := known.(Marker)
	if !ok {
		m = &setMarker{Known: known}
	}
	s := &Scanner{source: source, known: m, keepAll: keepAll}
	s.Restart()
	return s
}

// Restart forgets every page: the listing starts again.
func (s *Scanner) Restart() {
	s.known.StartMarks()
	s.changed, s.place, s.fresh = nil, nil, nil
	s.users, s.active = 0, 0
}

// Page takes one page's users. A user listed twice is an error (the
// source's pager sends a later copy to Replace).
func (s *Scanner) Page(users []events.User) error {
	for i := range users {
		u := &users[i]
		e, known, again := s.known.Mark(u.ID)
		if !known {
			if s.fresh == nil {
				s.fresh = map[string]struct{}{}
			}
			_, again = s.fresh[u.ID]
			s.fresh[u.ID] = struct{}{}
		}
		if again {
			return fmt.Errorf("diff: source %s: user %q appears twice in one snapshot", s.source, u.ID)
		}
		s.count(*u, 1)
		if s.keep(*u, e, known) {
			s.add(*u)
		}
	}
	return nil
}

// Replace takes a later copy of a listed user in place of the earlier one,
// or as a new user when none was listed.
func (s *Scanner) Replace(u events.User) error {
	e, known, again := s.known.Mark(u.ID)
	if !known {
		if s.fresh == nil {
			s.fresh = map[string]struct{}{}
		}
		_, again = s.fresh[u.ID]
		s.fresh[u.ID] = struct{}{}
	}
	if !again {
		s.count(u, 1)
		if s.keep(u, e, known) {
			s.add(u)
		}
		return nil
	}
	s.index()
	i, held := s.place[u.ID]
	if held {
		s.count(s.changed[i], -1)
	} else {
		// Listed unchanged before: it counted as the known user's state.
		s.users--
		s.active -= activeOf(e.Gone)
	}
	s.count(u, 1)
	switch keep := s.keep(u, e, known); {
	case keep && held:
		s.changed[i] = detach(u)
	case keep:
		s.add(u)
	case held:
		// Back to what is known: the earlier copy's change is void.
		last := len(s.changed) - 1
		moved := s.changed[last]
		s.changed[i] = moved
		s.place[moved.ID] = i
		s.changed = s.changed[:last]
		delete(s.place, u.ID)
	}
	return nil
}

// Finish ends the listing: the plan of what changed and, when the listing
// was complete, of the known users it no longer has.
func (s *Scanner) Finish(complete bool) Plan {
	p := Plan{Changed: s.changed, Users: s.users, Active: s.active}
	for _, u := range s.changed {
		if _, known := s.known.Lookup(u.ID); known {
			p.Need = append(p.Need, u.ID)
		}
	}
	if !complete {
		return p
	}
	s.known.RangeMarks(func(id string, gone Gone, marked bool) bool {
		if gone != Present {
			// Already gone: they cannot be removed, so they must not
			// dilute the mass-removal guard's ratio either, and a retired
			// VPP user that drops out of the listing is not retired a
			// second time.
			return true
		}
		p.Known++
		if !marked {
			p.Missing = append(p.Missing, id)
		}
		return true
	})
	slices.Sort(p.Missing)
	return p
}

// keep decides whether u is kept: new, changed, back after a removal, or
// every user with keepAll.
func (s *Scanner) keep(u events.User, e Entry, known bool) bool {
	return s.keepAll || !known || e.Gone == Removed || e.Digest != u.Digest()
}

func (s *Scanner) add(u events.User) {
	if s.place != nil {
		s.place[u.ID] = len(s.changed)
	}
	s.changed = append(s.changed, detach(u))
}

// index builds place, the first time a copy is replaced.
func (s *Scanner) index() {
	if s.place != nil {
		return
	}
	s.place = make(map[string]int, len(s.changed))
	for i := range s.changed {
		s.place[s.changed[i].ID] = i
	}
}

func (s *Scanner) count(u events.User, n int) {
	s.users += n
	if GoneOf(u.Status) == Present {
		s.active += n
	}
}

func activeOf(g Gone) int {
	if g == Present {
		return 1
	}
	return 0
}

// detach copies a kept user's raw record, so that it holds no page's
// buffer in memory once the page is let go.
func detach(u events.User) events.User {
	if u.Raw != nil {
		u.Raw = bytes.Clone(u.Raw)
	}
	return u
}
