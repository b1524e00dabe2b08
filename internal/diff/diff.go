// Package diff turns a snapshot of a directory into rollcall events. It is a
// pure function of the previous state and the snapshot, so every rule of
// SPEC §2.1 is tested here without NATS or HTTP.
package diff

import (
	"fmt"
	"strings"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// Prev is the last known state of one user and the KV revision it was read at.
type Prev struct {
	User     events.User
	Revision uint64
}

// Gone says whether a previous user can still be removed: a VPP user
// already retired or a tombstone left by an earlier removal cannot.
type Gone uint8

// Gone states.
const (
	Present Gone = iota
	Retired      // status retired: not retired a second time when it drops out
	Removed      // a tombstone (status removed): seen again, it is a new arrival
)

// GoneOf classifies a stored status.
func GoneOf(status string) Gone {
	switch strings.ToLower(status) {
	case events.StatusRemoved:
		return Removed
	case events.StatusRetired:
		return Retired
	}
	return Present
}

// Entry is what a run must know of a previous user to tell, without its
// record, that it did not change.
type Entry struct {
	Revision uint64
	Digest   events.Digest // the fingerprint of its tracked fields
	Gone     Gone
}

// Known is every previous user of a source in compact form. A poller keeps
// one per source between runs (state.Index) and reads the records of only
// the users Scan says changed.
type Known interface {
	Len() int
	Lookup(id string) (Entry, bool)
	// Range calls yield for every user until it returns false.
	Range(yield func(id string, gone Gone) bool)
}

// Marker is a Known that can remember which users a snapshot lists, so
// that Scan needs no set of its own beside it (at a million users, that set
// cost as much as the rest of the scan).
type Marker interface {
	Known
	// StartMarks begins a scan.
	StartMarks()
	// Mark looks id up and marks it, reporting whether it was already
	// marked since StartMarks.
	Mark(id string) (e Entry, known, again bool)
	// RangeMarks calls yield for every user, with whether it is marked,
	// until yield returns false.
	RangeMarks(yield func(id string, gone Gone, marked bool) bool)
}

// Input is one run's worth of observations.
type Input struct {
	Source string
	Kind   string
	// Previous holds previous records by source user id: every one, or,
	// with Known set, at least those Plan.Need and (unless removals are
	// held) Plan.Missing list. A user Known lists but Previous lacks is
	// treated as unknown (its key is gone from the KV).
	Previous map[string]Prev
	// Known is every previous user in compact form; nil derives it from
	// Previous.
	Known    Known
	Snapshot []events.User
	// Complete is true when Snapshot is the whole directory; only then is a
	// missing user retired.
	Complete bool
	// HoldRemovals lists users absent from the snapshot without retiring
	// them (the mass-removal guard is holding them back): they appear in
	// Result.Removed but yield no event and no write.
	HoldRemovals bool
	Observed     time.Time
	// Plan is Scan's result for this input, to be spared the second pass;
	// nil scans again.
	Plan *Plan
	// SilentNew computes the writes but no events for users that are not
	// known: a source's first snapshot seeds the state silently, and
	// building a million events only to drop them cost seconds.
	SilentNew bool
}

// Write is one state change to commit: the user's new state, compare-and-set
// against the revision it was read at (0 = the key must not exist).
type Write struct {
	User     events.User
	Revision uint64
}

// Result is what a run must publish and then commit.
type Result struct {
	Events []events.Event
	Writes []Write
	// Removed lists the ids absent from a complete snapshot that were not
	// already gone: retired by this result, or held when HoldRemovals.
	Removed []string
	// Known counts the previous users that could be removed (neither
	// removed nor retired), the base of the mass-removal guard's ratio.
	Known int
}

// Plan is the first pass over a snapshot, with only the compact Known: what
// changed, and which previous records Compute needs.
type Plan struct {
	// Need lists the known users in the snapshot whose tracked fields
	// moved (or who return after a removal): their records must be read.
	Need []string
	// Missing lists, sorted, the known users absent from a complete
	// snapshot that are not already gone: the removals, whose records are
	// needed unless they are held.
	Missing []string
	// Known counts the previous users that could be removed.
	Known int
	// Changed are the users new or changed (every user, for a Scanner
	// that keeps all): the only ones whose records a run can publish or
	// store, with their own copy of their raw records.
	Changed []events.User
	// Users counts the distinct users listed, Active those of them
	// neither retired nor removed.
	Users, Active int
}

// Scan is Compute's first pass: it checks the snapshot for duplicate ids
// and compares each user's fingerprint with Known, without any previous
// record. It is a Scanner given the whole snapshot as one page.
func Scan(in Input) (Plan, error) {
	k := in.Known
	if k == nil {
		k = prevKnown(in.Previous)
	}
	s := NewScanner(in.Source, k, false)
	if err := s.Page(in.Snapshot); err != nil {
		return Plan{}, err
	}
	return s.Finish(in.Complete), nil
}

// setMarker marks in a set of its own, for a Known that cannot.
type setMarker struct {
	Known
	marked map[string]struct{}
}

func (s *setMarker) StartMarks() { s.marked = make(map[string]struct{}, s.Len()) }

func (s *setMarker) Mark(id string) (Entry, bool, bool) {
	e, ok := s.Lookup(id)
	if !ok {
		return Entry{}, false, false
	}
	_, again := s.marked[id]
	s.marked[id] = struct{}{}
	return e, true, again
}

func (s *setMarker) RangeMarks(yield func(string, Gone, bool) bool) {
	s.Range(func(id string, g Gone) bool {
		_, ok := s.marked[id]
		return yield(id, g, ok)
	})
}

// Compute applies SPEC §2.1 to in.
func Compute(in Input) (Result, error) {
	plan := in.Plan
	if plan == nil {
		p, err := Scan(in)
		if err != nil {
			return Result{}, err
		}
		plan = &p
	}
	var res Result
	for _, u := range plan.Changed {
		u.Source, u.SourceKind = in.Source, in.Kind
		prev, known := in.Previous[u.ID]
		if !known {
			u.Entries = newEntries(u)
		}
		if !known && in.SilentNew {
			res.Writes = append(res.Writes, Write{User: u})
			continue
		}
		if known {
			u.Entries = entriesOf(prev.User, u)
		}
		var specs []events.Spec
		switch {
		case !known || strings.EqualFold(prev.User.Status, events.StatusRemoved), recreated(prev.User, u):
			specs = arrival(u, prev, known)
		case prev.User.Digest() == u.Digest():
			continue // the record agrees with the snapshot after all
		case reregistered(prev.User, u):
			specs = reregistration(prev, u)
		default:
			specs = changes(prev, u)
		}
		if err := res.add(specs, prev.Revision, in.Observed); err != nil {
			return Result{}, err
		}
		res.Writes = append(res.Writes, Write{User: u, Revision: prev.Revision})
	}
	if !in.Complete {
		return res, nil
	}
	res.Known = plan.Known
	for _, id := range plan.Missing {
		prev, ok := in.Previous[id]
		if !ok && !in.HoldRemovals {
			continue // its key is gone from the KV: nothing to retire
		}
		res.Removed = append(res.Removed, id)
		if in.HoldRemovals {
			continue
		}
		gone := prev.User
		gone.Status = events.StatusRemoved
		p := prev.User
		spec := events.Spec{
			Type: events.TypeRetired, User: gone, Previous: &p, Reason: events.ReasonRemoved,
			Changes: []events.Change{{Field: "status", From: prev.User.Status, To: events.StatusRemoved}},
		}
		if err := res.add([]events.Spec{spec}, prev.Revision, in.Observed); err != nil {
			return Result{}, err
		}
		res.Writes = append(res.Writes, Write{User: gone, Revision: prev.Revision})
	}
	return res, nil
}

// prevKnown is Known over full previous records.
type prevKnown map[string]Prev

func (m prevKnown) Len() int { return len(m) }

func (m prevKnown) Lookup(id string) (Entry, bool) {
	p, ok := m[id]
	if !ok {
		return Entry{}, false
	}
	return Entry{Revision: p.Revision, Digest: p.User.Digest(), Gone: GoneOf(p.User.Status)}, true
}

func (m prevKnown) Range(yield func(string, Gone) bool) {
	for id, p := range m {
		if !yield(id, GoneOf(p.User.Status)) {
			return
		}
	}
}

func (r *Result) add(specs []events.Spec, rev uint64, observed time.Time) error {
	for _, s := range specs {
		s.PrevRevision, s.Observed = rev, observed
		e, err := events.New(s)
		if err != nil {
			return fmt.Errorf("diff: user %q: %w", s.User.ID, err)
		}
		r.Events = append(r.Events, e)
	}
	return nil
}

// arrival handles a user that is unknown or was removed. A user first seen
// past its first state yields each transition in order, so that a consumer
// that only listens for user.associated still hears about it.
func arrival(u events.User, prev Prev, known bool) []events.Spec {
	var previous *events.User
	if known {
		p := prev.User
		previous = &p
	}
	status := strings.ToLower(u.Status)
	if !events.AppleKind(u.SourceKind) || status == events.StatusRegistered {
		return []events.Spec{{Type: events.TypeRegistered, User: u, Previous: previous, Reason: events.ReasonNew, Changes: arrivalChanges(previous, u)}}
	}
	// VPP users begin Registered; one first seen Associated or Retired went
	// through Registered first.
	reg := u
	reg.Status = events.StatusRegistered
	specs := []events.Spec{{Type: events.TypeRegistered, User: reg, Previous: previous, Reason: events.ReasonNew, Changes: arrivalChanges(previous, reg)}}
	step := events.Spec{User: u, Previous: &reg, Reason: events.ReasonStatus,
		Changes: []events.Change{{Field: "status", From: reg.Status, To: u.Status}}}
	switch status {
	case events.StatusAssociated:
		step.Type = events.TypeAssociated
	case events.StatusRetired:
		step.Type = events.TypeRetired
	default:
		step.Type = events.TypeUpdated
	}
	return append(specs, step)
}

// recreated reports whether u is a new active entry for an Apple v2 key
// whose entries were all retired: v2 keys users by the client's own id,
// which a location may register again after retiring it (SPEC §1.4). It
// is a registration with previous set, not an update of the retired user.
func recreated(prev, u events.User) bool {
	if u.SourceKind != events.KindVPP2 || !strings.EqualFold(prev.Status, events.StatusRetired) {
		return false
	}
	// Any active status counts, one rollcall does not know included (the
	// source counts it active, docs/VPP2.md): only retired, removed and
	// deleted are not.
	switch strings.ToLower(u.Status) {
	case events.StatusRetired, events.StatusRemoved, "deleted", "":
		return false
	}
	return true
}

// entriesOf is the Entries u is recorded with: an Apple v2 user listed
// without the count of its key's retired entries (an incremental listing)
// keeps the recorded count; a retired user keeps none.
func entriesOf(prev, u events.User) *events.V2Entries {
	e := u.Entries
	switch {
	case u.SourceKind != events.KindVPP2:
		return e
	case !activeStatus(u.Status):
		return nil
	case e == nil:
		return prev.Entries
	case strings.EqualFold(prev.Status, events.StatusRemoved):
		return newEntries(u) // its entries all vanished with it
	case e.Retired < 0 && prev.Entries == nil:
		return nil
	case e.Retired < 0:
		return &events.V2Entries{Retired: prev.Entries.Retired, Active: e.Active}
	}
	return e
}

// newEntries is the Entries of an Apple v2 user whose key rollcall does
// not know (or knew removed, with no entry left): every entry of such a
// key is new since the last listing, so an incremental listing shows them
// all, and a retired one beside the active entry has the key looked up
// (the count is then known). A key shown only active has no retired
// entry; its count is 0, not "not known", or a retirement and re-creation
// before the next change of its record would go unseen (issue 17 review
// 17c).
func newEntries(u events.User) *events.V2Entries {
	e := u.Entries
	if u.SourceKind != events.KindVPP2 || e == nil || e.Retired >= 0 || !activeStatus(u.Status) {
		return e
	}
	return &events.V2Entries{Retired: 0, Active: e.Active}
}

// activeStatus reports whether an Apple v2 status is an active entry's.
func activeStatus(status string) bool {
	switch strings.ToLower(status) {
	case events.StatusRetired, events.StatusRemoved, "deleted", "":
		return false
	}
	return true
}

// reregistered reports whether an Apple v2 user active before and now had
// its active entry retired and a new one created between the two runs: its
// key has more retired entries than recorded, and its active entry is
// another one. A retired entry that appears beside an active entry that
// did not change is no retirement of the user. Entries not known (a record
// written before rollcall kept them) are never a change.
//
// An active user that was associated and is registered now is one too,
// whatever the counts say: an entry never goes back from associated to
// registered (Apple's Registered is an entry without an Apple Account yet),
// so the registered one is a new entry. Counts alone miss it when Apple
// purged a retired entry meanwhile (review 17c), and the change would
// otherwise be reported as a user.updated of the status, which did not
// happen.
func reregistered(prev, u events.User) bool {
	if u.SourceKind != events.KindVPP2 {
		return false
	}
	if strings.EqualFold(prev.Status, events.StatusAssociated) && strings.EqualFold(u.Status, events.StatusRegistered) {
		return true
	}
	p, n := prev.Entries, u.Entries
	return p != nil && n != nil && p.Retired >= 0 &&
		n.Retired > p.Retired && n.Active != p.Active &&
		activeStatus(prev.Status) && activeStatus(u.Status)
}

// reregistration is a retirement of the recorded user, then the new
// entry's arrival with the retired user as previous, as for a key
// re-created after a retirement seen by a run (SPEC §1.4).
func reregistration(prev Prev, u events.User) []events.Spec {
	p := prev.User
	gone := p
	gone.Status = events.StatusRetired
	gone.Entries = u.Entries
	specs := []events.Spec{{Type: events.TypeRetired, User: gone, Previous: &p, Reason: events.ReasonStatus,
		Changes: []events.Change{{Field: "status", From: p.Status, To: gone.Status}}}}
	return append(specs, arrival(u, Prev{User: gone, Revision: prev.Revision}, true)...)
}

func arrivalChanges(previous *events.User, u events.User) []events.Change {
	if previous == nil {
		return nil
	}
	return events.Diff(*previous, u)
}

// changes splits the differences of a known user into events: a status
// transition that has its own type, then a role change, then everything else
// as user.updated.
func changes(prev Prev, u events.User) []events.Spec {
	p := prev.User
	var status, role, other []events.Change
	for _, c := range events.Diff(p, u) {
		switch c.Field {
		case "status":
			status = append(status, c)
		case "role":
			role = append(role, c)
		default:
			other = append(other, c)
		}
	}
	if len(status) > 0 && u.SourceKind == events.KindVPP2 && statusType(u) == events.TypeRetired {
		// An Apple v2 key retired: the retired entry that stands for it
		// is the source's stable choice among all its retired entries
		// (v2 gives no time of retirement), which may be an older one
		// than the entry just retired. Its other fields are no change
		// of the user: the retirement is the one event (docs/VPP2.md).
		other = nil
	}
	var specs []events.Spec
	if len(status) > 0 {
		switch t := statusType(u); t {
		case "":
			other = append(status, other...) // e.g. Veeam Enabled → Disabled
		default:
			specs = append(specs, events.Spec{Type: t, User: u, Previous: &p, Changes: status, Reason: events.ReasonStatus})
		}
	}
	if len(role) > 0 {
		specs = append(specs, events.Spec{Type: events.TypeRoleChanged, User: u, Previous: &p, Changes: role, Reason: events.ReasonRole})
	}
	if len(other) > 0 {
		specs = append(specs, events.Spec{Type: events.TypeUpdated, User: u, Previous: &p, Changes: other, Reason: events.ReasonFields})
	}
	return specs
}

// statusType is the event type a status change to u's status has, or "" when
// the move is an ordinary update.
func statusType(u events.User) string {
	if !events.AppleKind(u.SourceKind) {
		return ""
	}
	switch strings.ToLower(u.Status) {
	case events.StatusAssociated:
		return events.TypeAssociated
	case events.StatusRetired:
		return events.TypeRetired
	}
	return ""
}
