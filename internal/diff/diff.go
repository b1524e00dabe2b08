// Package diff turns a snapshot of a directory into rollcall events. It is a
// pure function of the previous state and the snapshot, so every rule of
// SPEC §2.1 is tested here without NATS or HTTP.
package diff

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// Prev is the last known state of one user and the KV revision it was read at.
type Prev struct {
	User     events.User
	Revision uint64
}

// Input is one run's worth of observations.
type Input struct {
	Source   string
	Kind     string
	Previous map[string]Prev // by source user id
	Snapshot []events.User
	// Complete is true when Snapshot is the whole directory; only then is a
	// missing user retired.
	Complete bool
	// HoldRemovals lists users absent from the snapshot without retiring
	// them (the mass-removal guard is holding them back): they appear in
	// Result.Removed but yield no event and no write.
	HoldRemovals bool
	Observed     time.Time
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

// Compute applies SPEC §2.1 to in.
func Compute(in Input) (Result, error) {
	var res Result
	seen := make(map[string]struct{}, len(in.Snapshot))
	for _, u := range in.Snapshot {
		if _, dup := seen[u.ID]; dup {
			return Result{}, fmt.Errorf("diff: source %s: user %q appears twice in one snapshot", in.Source, u.ID)
		}
		seen[u.ID] = struct{}{}
		u.Source, u.SourceKind = in.Source, in.Kind
		prev, known := in.Previous[u.ID]
		var specs []events.Spec
		switch {
		case !known || strings.EqualFold(prev.User.Status, events.StatusRemoved):
			specs = arrival(u, prev, known)
		case prev.User.Fingerprint() == u.Fingerprint():
			continue // nothing tracked moved; no event and no write
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
	for _, p := range in.Previous {
		switch strings.ToLower(p.User.Status) {
		case events.StatusRemoved, events.StatusRetired:
			// Already gone: they cannot be removed, so they must not
			// dilute the mass-removal guard's ratio either.
		default:
			res.Known++
		}
	}
	ids := make([]string, 0, len(in.Previous))
	for id := range in.Previous {
		if _, ok := seen[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		prev := in.Previous[id]
		switch strings.ToLower(prev.User.Status) {
		case events.StatusRemoved, events.StatusRetired:
			// Already gone: a retired VPP user that drops out of the listing
			// is not retired a second time.
			continue
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
	if u.SourceKind != events.KindVPP || status == events.StatusRegistered {
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
	if u.SourceKind != events.KindVPP {
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
