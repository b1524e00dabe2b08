package poller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// Confirmer is a source that can look one user up directly. The poller
// uses it to confirm that a user missing from a complete snapshot is gone
// (SPEC §1.3): offset paging over a live directory can skip a present user
// while every count still matches.
type Confirmer interface {
	// LookupUser reports whether the directory holds the user with this
	// id. An error means the lookup could not tell; it never means absent.
	LookupUser(ctx context.Context, id string) (present bool, err error)
}

// Ways an absence is confirmed, the method label of
// rollcall_source_absence_checks_total.
const (
	confirmByLookup   = "lookup"
	confirmBySnapshot = "snapshot"
)

// Outcomes of an absence check.
const (
	absenceConfirmed  = "absent"
	absencePresent    = "present"
	absenceUnresolved = "unresolved"
)

// absences is what the confirm stage found out about a snapshot's missing
// users.
type absences struct {
	confirmed  []string // gone: to be retired (sorted)
	present    int      // found after all: they keep their state
	unresolved int      // could not be told: they keep their state until a later run tells
	relisted   bool     // a second listing was made
}

// confirmAbsences is the confirm stage: of the users missing from a
// complete snapshot, it returns those whose absence is confirmed. A few
// are looked up one by one; when the source cannot look users up, a lookup
// fails, or more users are missing than the removal guard's minimum, the
// rest must be missing from a second complete snapshot too. A user found
// either way is present; one that neither way can tell about is not
// retired in this run. Only a cancelled ctx fails the stage: a source whose
// lookups or second snapshot fail still commits the rest of its run.
func (p *Poller) confirmAbsences(ctx context.Context, src Source, missing []string, log *slog.Logger) (absences, error) {
	var a absences
	if len(missing) == 0 {
		return a, nil
	}
	rest := missing
	if c, ok := src.(Confirmer); ok && len(missing) <= p.cfg.Guard.MinRemovals {
		var err error
		if rest, err = p.lookUp(ctx, src, c, missing, &a, log); err != nil {
			return a, err
		}
	}
	if len(rest) > 0 {
		if err := p.resnapshot(ctx, src, rest, &a, log); err != nil {
			return a, err
		}
	}
	slices.Sort(a.confirmed)
	return a, nil
}

// lookUp checks each id with a direct lookup and returns those it could
// not tell about.
func (p *Poller) lookUp(ctx context.Context, src Source, c Confirmer, ids []string, a *absences, log *slog.Logger) ([]string, error) {
	var rest []string
	for _, id := range ids {
		// A lookup follows the source's retry rules, which for some
		// answers (Apple's 9603) last minutes: bound it, and fall back to a
		// second listing.
		lctx, cancel := context.WithTimeout(ctx, p.cfg.LookupTimeout)
		present, err := c.LookupUser(lctx, id)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("source %s: confirm absences: %w", src.Name(), ctx.Err())
		case err != nil:
			log.Warn("could not look up a user missing from the listing; a second listing must confirm its absence",
				"user", shortID(id), "err", err)
			rest = append(rest, id)
			continue
		case present:
			a.present++
			log.Info("user missing from the listing was found by a direct lookup; it keeps its state", "user", shortID(id))
			p.countAbsence(src, confirmByLookup, absencePresent)
			continue
		}
		a.confirmed = append(a.confirmed, id)
		p.countAbsence(src, confirmByLookup, absenceConfirmed)
	}
	return rest, nil
}

// resnapshot lists the directory once more: of ids, those missing again
// are confirmed, those listed now are present.
func (p *Poller) resnapshot(ctx context.Context, src Source, ids []string, a *absences, log *slog.Logger) error {
	log.Info("listing the directory again to confirm users missing from it", "missing", len(ids))
	a.relisted = true
	found := presence{want: make(map[string]struct{}, len(ids)), listed: map[string]struct{}{}}
	for _, id := range ids {
		found.want[id] = struct{}{}
	}
	snap, err := list(ctx, src, sources.Request{Full: true}, &found)
	if ctx.Err() != nil {
		return fmt.Errorf("source %s: confirm absences: %w", src.Name(), ctx.Err())
	}
	if err == nil && !snap.Complete {
		err = fmt.Errorf("the second listing was not complete")
	}
	if err != nil {
		a.unresolved += len(ids)
		p.countAbsenceN(src, confirmBySnapshot, absenceUnresolved, len(ids))
		log.Warn("could not confirm that users missing from the listing are gone; they keep their state until a later run confirms it",
			"missing", len(ids), "err", err)
		return nil
	}
	listed := found.listed
	for _, id := range ids {
		if _, ok := listed[id]; ok {
			a.present++
			continue
		}
		a.confirmed = append(a.confirmed, id)
	}
	p.countAbsenceN(src, confirmBySnapshot, absencePresent, len(listed))
	p.countAbsenceN(src, confirmBySnapshot, absenceConfirmed, len(ids)-len(listed))
	if len(listed) > 0 {
		log.Info("users missing from the first listing are in the second; they keep their state", "present", len(listed))
	}
	return nil
}

func (p *Poller) countAbsence(src Source, method, outcome string) {
	p.countAbsenceN(src, method, outcome, 1)
}

func (p *Poller) countAbsenceN(src Source, method, outcome string, n int) {
	if m := p.cfg.Metrics; m != nil && n > 0 {
		m.AbsenceChecks.WithLabelValues(src.Name(), method, outcome).Add(float64(n))
	}
}

// shortID keeps log lines bounded for ids of any length.
func shortID(id string) string {
	const max = 80
	if len(id) <= max {
		return id
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(id[:max], ""), len(id))
}

// presence is the Pages of a second listing: it keeps, of the users
// listed, only whether each wanted one is.
type presence struct {
	want, listed map[string]struct{}
}

func (p *presence) Page(users []events.User) error {
	for i := range users {
		_ = p.Replace(users[i])
	}
	return nil
}

func (p *presence) Replace(u events.User) error {
	if _, ok := p.want[u.ID]; ok {
		p.listed[u.ID] = struct{}{}
	}
	return nil
}

func (p *presence) Restart() { clear(p.listed) }
