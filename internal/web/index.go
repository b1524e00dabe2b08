package web

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/rollcall/rollcall/pkg/events"
)

// EventRef is what the index keeps of one event on ROLLCALL_EVENTS: enough
// for a timeline row, the chart and the delivery status, without the raw
// record (which is read from the stream when asked for).
type EventRef struct {
	Seq     uint64    // stream sequence
	Stored  time.Time // when the stream stored it
	ID      string
	Type    string
	Time    time.Time // when the poller observed the change
	Source  string
	UserID  string
	Subject string
	Reason  string
	Changes []events.Change
}

// userEntry is one user of one source as the index knows it.
type userEntry struct {
	user events.User
	hay  string // case-folded id, e-mail, user name and name, NUL-separated
	// The case-folded id, e-mail address and user name: an exact match.
	id, email, name string
	// former are e-mail addresses and user names the user had before
	// (events' data.previous), case-folded: searching an old address
	// finds who had it.
	former []string
	evs    []int // positions in Index.log, oldest first
}

// Index is the console's in-memory view of every source's users (from
// rollcall_users, or the baselines, and the stream) and of the stream's
// events. It answers searches without a round trip to NATS, which is what
// keeps a search at 100k users per source well below 200 ms.
type Index struct {
	mu    sync.RWMutex
	users map[string]*userEntry // key: source + "\x00" + id
	order []*userEntry          // insertion order, for a stable scan
	log   []EventRef            // stream order
	byID  map[string]int        // event id → position in log
	kinds map[string]string     // source → kind
	last  uint64                // last stream sequence applied

	// blob is the entries' hay in order, each followed by a NUL, and
	// starts[i] where order[i]'s begins: one strings.Index over it finds
	// the next match at memory speed, where a call per user cost 30 ms
	// at 200k users. Entries changed since it was built are searched one
	// by one from changed, until there are so many that a search builds
	// the blob again.
	blob    string
	starts  []int
	changed map[*userEntry]bool
}

// rebuildAt is how many changed users make a search rebuild the blob:
// searching them one by one costs about what a rebuild does by then.
const rebuildAt = 4096

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{users: map[string]*userEntry{}, byID: map[string]int{}, kinds: map[string]string{}, changed: map[*userEntry]bool{}}
}

func userKey(source, id string) string { return source + "\x00" + id }

// PutUser records u's current state (a KV value, a baseline entry or an
// event's data.user). Raw is dropped: the index answers searches, it is
// not a copy of the directory.
func (x *Index) PutUser(u events.User) {
	u.Raw = nil
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putLocked(u)
}

func (x *Index) putLocked(u events.User) *userEntry {
	if u.SourceKind != "" {
		x.kinds[u.Source] = u.SourceKind
	}
	k := userKey(u.Source, u.ID)
	e := x.users[k]
	if e == nil {
		e = &userEntry{}
		x.users[k] = e
		x.order = append(x.order, e)
	}
	e.user = u
	e.id, e.email, e.name = fold(u.ID), fold(u.Email), fold(u.UserName)
	x.rehay(e)
	return e
}

// rehay makes the entry's search text again.
func (x *Index) rehay(e *userEntry) {
	u := e.user
	fields := append([]string{e.id, e.email, e.name, fold(u.FirstName + " " + u.LastName), fold(u.ClientUserID)}, e.former...)
	e.hay = strings.Join(fields, "\x00")
	x.changed[e] = true
}

// remember adds the e-mail address and user name prev had to e's former
// ones, when they differ from its own.
func (x *Index) remember(e *userEntry, prev *events.User) {
	if prev == nil {
		return
	}
	added := false
	for _, v := range []string{fold(prev.Email), fold(prev.UserName)} {
		if v != "" && v != e.email && v != e.name && !slices.Contains(e.former, v) {
			e.former = append(e.former, v)
			added = true
		}
	}
	if added {
		x.rehay(e)
	}
}

// AddEvent records an event: its row in the log and, from data.user, the
// user's state after it (after), and from data.previous (before) the
// e-mail address and user name the user had. An event already recorded (a watch restarted from
// an earlier sequence) is ignored.
func (x *Index) AddEvent(ref EventRef, after, before *events.User) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ref.Seq != 0 && ref.Seq <= x.last {
		return
	}
	x.last = max(x.last, ref.Seq)
	var e *userEntry
	if after != nil && after.ID != "" {
		u := *after
		u.Raw = nil
		if u.Source == "" {
			u.Source = ref.Source
		}
		e = x.putLocked(u)
	} else if e = x.users[userKey(ref.Source, ref.UserID)]; e == nil {
		e = x.putLocked(events.User{Source: ref.Source, ID: ref.UserID})
	}
	x.remember(e, before)
	x.log = append(x.log, ref)
	x.byID[ref.ID] = len(x.log) - 1
	e.evs = append(e.evs, len(x.log)-1)
}

// LastSeq is the last stream sequence the index applied.
func (x *Index) LastSeq() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.last
}

// Hit is one search result.
type Hit struct {
	User  events.User
	Exact bool // the id, e-mail address or user name is the query itself
}

// Search finds users whose id, e-mail address, user name or name holds q
// (without regard to case, by Unicode case folding), every source; exact matches come first, then
// the others by source and id. At most limit hits; total counts them all.
func (x *Index) Search(q string, limit int) (hits []Hit, total int) {
	q = fold(strings.TrimSpace(strings.ReplaceAll(q, "\x00", "")))
	if q == "" {
		return nil, 0
	}
	x.fresh()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var exact, partial []Hit
	add := func(e *userEntry) {
		total++
		if e.id == q || e.email == q || e.name == q || slices.Contains(e.former, q) {
			exact = append(exact, Hit{User: e.user, Exact: true})
		} else if len(partial) < limit {
			partial = append(partial, Hit{User: e.user})
		}
	}
	for pos := 0; pos < len(x.blob); {
		i := strings.Index(x.blob[pos:], q)
		if i < 0 {
			break
		}
		k := sort.SearchInts(x.starts, pos+i+1) - 1 // the entry the match is in
		pos = x.next(k)
		if e := x.order[k]; !x.changed[e] {
			add(e)
		}
	}
	for e := range x.changed {
		if strings.Contains(e.hay, q) {
			add(e)
		}
	}
	byRef := func(a, b Hit) int {
		if c := strings.Compare(a.User.Source, b.User.Source); c != 0 {
			return c
		}
		return strings.Compare(a.User.ID, b.User.ID)
	}
	slices.SortFunc(exact, byRef)
	slices.SortFunc(partial, byRef)
	hits = append(exact, partial...)
	if len(hits) > limit {
		hits = hits[:limit]
	}
	return hits, total
}

// fold is s case-folded (Unicode full case folding) and without accents,
// what the index keeps and a query is matched as: strings.ToLower keeps
// the Greek final sigma ς apart from σ, so "ΠΑΠΑΔΟΠΟΥΛΟΣ" would not find
// "Παπαδοπουλος", and ß apart from "ss". The marks on Latin, Greek and
// Cyrillic letters are dropped (é is e, ü is u, the dot a Turkish İ
// leaves is gone), whether the text came composed or decomposed (as
// Apple's services often send it): an administrator types "jose garcia"
// or "muller" on any keyboard. Marks after other letters stay (kana's
// voicing marks and Indic vowel signs change the letter). ASCII, most of
// what a directory holds, folds as it lower-cases, without the cost of
// a Caser (one per call: a Caser keeps state, and searches run at once).
func fold(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return unaccent(cases.Fold().String(s))
		}
	}
	return strings.ToLower(s)
}

// unaccent drops the combining marks after Latin, Greek and Cyrillic
// letters, and returns the rest in normal form C.
func unaccent(s string) string {
	d := norm.NFD.String(s)
	var b strings.Builder
	b.Grow(len(d))
	var base rune
	for _, r := range d {
		if unicode.Is(unicode.Mn, r) {
			if unicode.In(base, unicode.Latin, unicode.Greek, unicode.Cyrillic) {
				continue
			}
		} else {
			base = r
		}
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}

// next is where the entry after order[k] begins in the blob.
func (x *Index) next(k int) int {
	if k+1 < len(x.starts) {
		return x.starts[k+1]
	}
	return len(x.blob)
}

// fresh rebuilds the blob when rebuildAt users changed since it was
// built.
func (x *Index) fresh() {
	x.mu.RLock()
	n := len(x.changed)
	x.mu.RUnlock()
	if n < rebuildAt {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.changed) < rebuildAt {
		return
	}
	n = 0
	for _, e := range x.order {
		n += len(e.hay) + 1
	}
	var b strings.Builder
	b.Grow(n)
	starts := make([]int, len(x.order))
	for i, e := range x.order {
		starts[i] = b.Len()
		b.WriteString(e.hay)
		b.WriteByte(0)
	}
	x.blob, x.starts = b.String(), starts
	clear(x.changed)
}

// User returns a user's state and events, newest first.
func (x *Index) User(source, id string) (events.User, []EventRef, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e := x.users[userKey(source, id)]
	if e == nil {
		return events.User{}, nil, false
	}
	out := make([]EventRef, 0, len(e.evs))
	for i := len(e.evs) - 1; i >= 0; i-- {
		out = append(out, x.log[e.evs[i]])
	}
	return e.user, out, true
}

// Event finds an event by id.
func (x *Index) Event(id string) (EventRef, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.byID[id]
	if !ok {
		return EventRef{}, false
	}
	return x.log[i], true
}

// SourceStat is what the overview says about a source's users.
type SourceStat struct {
	Name, Kind string
	Users      int // tracked users, those removed from the directory not counted
}

// Sources lists the sources the index knows, sorted by name.
func (x *Index) Sources() []SourceStat {
	x.mu.RLock()
	defer x.mu.RUnlock()
	m := map[string]*SourceStat{}
	for _, e := range x.order {
		s := m[e.user.Source]
		if s == nil {
			s = &SourceStat{Name: e.user.Source, Kind: x.kinds[e.user.Source]}
			m[e.user.Source] = s
		}
		if !strings.EqualFold(e.user.Status, events.StatusRemoved) {
			s.Users++
		}
	}
	out := make([]SourceStat, 0, len(m))
	for _, s := range m {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b SourceStat) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Since returns the events stored at or after t, oldest first (the chart
// and the 24-hour delivery counts read them).
func (x *Index) Since(t time.Time) []EventRef {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(x.log, t, func(r EventRef, t time.Time) int { return r.Stored.Compare(t) })
	return slices.Clone(x.log[i:])
}
