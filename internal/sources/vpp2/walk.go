package vpp2

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// errTooManyRetired ends an incremental walk that shows more keys only
// retired than Config.MaxRetiredLookups: a full listing settles them all.
var errTooManyRetired = errors.New("too many keys shown only retired to look each up")

// errUnsettled ends an incremental walk whose lookup of a key it showed
// retired lists no entry at all: the entry was purged since, or the two
// answers disagree. Neither is evidence of a retirement, so a full listing
// settles the key, with the absence rule's confirmation if it is gone.
var errUnsettled = errors.New("a user shown retired has no entry in its lookup")

// Stream lists the users page by page into out: everything (retired
// entries included: a key with only retired entries is a retired user)
// when there is no cursor or req.Full is set, otherwise the entries
// modified since req.Cursor, which is never complete. An incremental run
// whose cursor Apple refuses (9721), or that shows too many keys only
// retired, becomes a full listing, said with out.Restart.
func (c *Client) Stream(ctx context.Context, req sources.Request, out sources.Pages) (sources.Snapshot, error) {
	if req.Cursor != "" && !req.Full {
		snap, err := c.walk(ctx, req.Cursor, out)
		ae, isAPI := asAPIError(err)
		switch {
		case isAPI && ae.fullSync():
			c.log.WarnContext(ctx, "vpp2 versionId no longer accepted (9721), running a full sync")
		case errors.Is(err, errTooManyRetired):
			c.log.InfoContext(ctx, "vpp2 incremental run shows many users only retired, running a full sync to settle them", "max_lookups", c.lookups)
		case errors.Is(err, errUnsettled):
			c.log.InfoContext(ctx, "vpp2 lookup lists no entry for a user the incremental run showed retired (purged since?), running a full sync to settle it")
		default:
			return snap, err
		}
		out.Restart()
	}
	return c.walk(ctx, "", out)
}

// walk runs one listing (full with since "", else incremental) and starts
// it again, at most c.restarts times, when it cannot be finished as one
// consistent listing (versionId changed, 9650).
func (c *Client) walk(ctx context.Context, since string, out sources.Pages) (sources.Snapshot, error) {
	for restarts := 0; ; restarts++ {
		if restarts > 0 {
			out.Restart()
		}
		snap, err := c.walkOnce(ctx, since, out)
		var rs restartError
		if !errors.As(err, &rs) {
			return snap, err
		}
		if restarts >= c.restarts {
			return sources.Snapshot{}, fmt.Errorf("source %s: listing cannot be finished as one consistent listing, giving up after %d restarts: %w: %w",
				c.name, restarts, ErrPaging, rs.err)
		}
		delay := c.backoff.Delay(restarts+1, 0)
		c.log.WarnContext(ctx, "vpp2 listing changed under the walk, restarting it from page 0",
			"error", rs.err, "restart", restarts+1, "max_restarts", c.restarts, "delay", delay)
		if err := httpx.Sleep(ctx, delay); err != nil {
			return sources.Snapshot{}, fmt.Errorf("source %s: listing: %w", c.name, err)
		}
	}
}

// walkOnce follows nextPageIndex from page 0 until Apple sends none.
func (c *Client) walkOnce(ctx context.Context, since string, out sources.Pages) (sources.Snapshot, error) {
	full := since == ""
	snap := sources.Snapshot{Complete: full}
	base := url.Values{}
	if !full {
		base.Set("sinceVersionId", since)
	}
	m := newMerger(c, full)
	var version string
	var total int64
	for idx := int64(0); ; {
		pageNo := int(idx) + 1
		where := fmt.Sprintf("page %d", pageNo)
		p, err := c.getPage(ctx, pageQuery(base, idx), where, pageNo)
		if err != nil {
			return sources.Snapshot{}, err
		}
		if err := c.checkPage(p, idx, pageNo, full, &version); err != nil {
			return sources.Snapshot{}, err
		}
		if idx == 0 {
			total = p.TotalPages
		} else if p.TotalPages > 0 && total > 0 && p.TotalPages != total {
			// Apple: totalPages changes with the versionId, never alone.
			return sources.Snapshot{}, fmt.Errorf("source %s: page %d: totalPages %d, but page 1 said %d with the same versionId: %w",
				c.name, pageNo, p.TotalPages, total, ErrPaging)
		}
		snap.Pages = pageNo
		if err := m.page(p.Users, pageNo, out); err != nil {
			return sources.Snapshot{}, err
		}
		c.log.DebugContext(ctx, "vpp2 page fetched", "page", pageNo, "users", len(p.Users), "total_pages", p.TotalPages)
		if !p.HasNext {
			if last := max(total, p.TotalPages); last > 0 && idx+1 < last {
				// The listing stops short of the pages it announced: the
				// entries of the pages never fetched would be missing, and
				// a key judged on a retired entry alone (SPEC §1.3).
				return sources.Snapshot{}, fmt.Errorf("source %s: page %d: no nextPageIndex, but totalPages is %d: %w", c.name, pageNo, last, ErrPaging)
			}
			break
		}
		if err := c.another(p, idx, pageNo); err != nil {
			return sources.Snapshot{}, err
		}
		idx = p.NextPageIndex
	}
	snap.Cursor = version
	if full {
		if err := m.refetch(ctx, version, out); err != nil {
			return sources.Snapshot{}, err
		}
	}
	if !full {
		if version == "" {
			// Nothing changed since the cursor: Apple sends no new one.
			snap.Cursor = since
		}
		if err := c.settle(ctx, m, out); err != nil {
			return sources.Snapshot{}, err
		}
	}
	return snap, nil
}

// checkPage checks that p is page idx of one consistent listing: the
// versionId of page 0 (which is the cursor) on every page. A field Apple
// leaves out of a later page cannot be checked and is let pass; one that
// differs never is.
func (c *Client) checkPage(p *page, idx int64, pageNo int, full bool, version *string) error {
	if p.CurrentPageIndex >= 0 && p.CurrentPageIndex != idx {
		return &sources.DecodeError{Source: c.name, Page: pageNo, Field: "currentPageIndex",
			Err: fmt.Errorf("%d, but page index %d was asked for: %w", p.CurrentPageIndex, idx, ErrPaging)}
	}
	if idx == 0 {
		if full && p.VersionID == "" {
			// The cursor of every later run, and the consistency check.
			return &sources.DecodeError{Source: c.name, Page: pageNo, Field: "versionId", Err: errors.New("missing")}
		}
		*version = p.VersionID
		return nil
	}
	if p.VersionID != "" && p.VersionID != *version {
		return restartError{fmt.Errorf("source %s: page %d: versionId changed since page 1", c.name, pageNo)}
	}
	return nil
}

// another checks that the walk may go on to nextPageIndex.
func (c *Client) another(p *page, idx int64, pageNo int) error {
	switch {
	case p.NextPageIndex != idx+1:
		return fmt.Errorf("source %s: page %d: nextPageIndex %d does not follow page index %d: %w", c.name, pageNo, p.NextPageIndex, idx, ErrPaging)
	case p.TotalPages > 0 && p.NextPageIndex >= p.TotalPages:
		return fmt.Errorf("source %s: page %d: nextPageIndex %d, but totalPages is %d: %w", c.name, pageNo, p.NextPageIndex, p.TotalPages, ErrPaging)
	case pageNo >= c.maxPages:
		return fmt.Errorf("source %s: page %d: the listing goes on beyond %d pages: %w", c.name, pageNo, c.maxPages, ErrPaging)
	}
	return nil
}

// settle decides the keys an incremental walk showed only retired, or
// both active and retired. A modified retired entry may be the user's
// retirement or an old duplicate of a user still active under the same
// clientUserId, and a key's retired entries are counted (a retirement and
// re-creation between two runs adds one beside a new active entry), so
// each such key is looked up (GET /users?clientUserId=…) and takes the
// state of all its entries. More such keys than c.lookups end the walk
// with errTooManyRetired, and a lookup listing no entry with errUnsettled:
// a full listing then settles them.
func (c *Client) settle(ctx context.Context, m *merger, out sources.Pages) error {
	if len(m.held)+len(m.mixed) == 0 {
		return nil
	}
	if len(m.held)+len(m.mixed) > c.lookups {
		return errTooManyRetired
	}
	keys := make([]string, 0, len(m.held)+len(m.mixed))
	for k := range m.held {
		keys = append(keys, k)
	}
	for k := range m.mixed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	users := make([]events.User, 0, len(keys))
	var again []events.User // keys a page delivered already
	for _, k := range keys {
		entries, err := c.entriesOf(ctx, k)
		if err != nil {
			return err
		}
		e, ok, err := resolve(entries)
		switch {
		case err != nil:
			return fmt.Errorf("source %s: settle a user shown retired: %w", c.name, err)
		case !ok:
			// No entry at all, though the walk just listed one: purged
			// since (Apple's retired entries do go), or the answers
			// disagree. Neither is evidence of a retirement (the user
			// may still have an active entry), and waiting for the next
			// scheduled full listing could hold a real one back for a
			// day: a full listing now settles the key, and the absence
			// rule confirms a real disappearance.
			return errUnsettled
		}
		u := c.user(e, retiredCount(entries), true)
		if _, ok := m.mixed[k]; ok {
			again = append(again, u)
		} else {
			users = append(users, u)
		}
	}
	c.log.DebugContext(ctx, "vpp2 users shown retired settled by lookup", "users", len(keys))
	if err := out.Page(users); err != nil {
		return err
	}
	for _, u := range again {
		if err := out.Replace(u); err != nil {
			return err
		}
	}
	return nil
}

// retiredCount counts the retired entries of one key.
func retiredCount(entries []entry) int {
	n := 0
	for _, e := range entries {
		if !active(e.Status) {
			n++
		}
	}
	return n
}
