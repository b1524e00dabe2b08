package vpp2

import (
	"context"
	"fmt"
	"net/url"

	"github.com/rollcall/rollcall/internal/redact"
)

// maxLookupPages bounds the pages of one key's entries: a key has a few.
const maxLookupPages = 20

// LookupUser reports whether the location still holds any entry for the
// clientUserId id (GET /users?clientUserId=…), to confirm an absence from
// a complete listing before it is published (SPEC §1.3). A key with only
// retired entries is present: it is a retired user, and full listings
// list it. present is false only for an answer that lists no entry for
// the key; failures that outlast their retries, refused tokens (StopsSource)
// and answers about other keys are errors, never an absence: the poller
// then confirms with a second complete listing.
func (c *Client) LookupUser(ctx context.Context, id string) (bool, error) {
	entries, err := c.entriesOf(ctx, id)
	if err != nil {
		return false, err
	}
	c.log.DebugContext(ctx, "vpp2 user looked up", "entries", len(entries))
	return len(entries) > 0, nil
}

// entriesOf lists every entry of one clientUserId.
func (c *Client) entriesOf(ctx context.Context, key string) ([]entry, error) {
	base := url.Values{"clientUserId": {key}}
	// The key is cut short in messages: it may be anything a client sent.
	where := fmt.Sprintf("lookup of user %q", redact.Excerpt(key, 40))
	var out []entry
	for idx := int64(0); ; {
		pageNo := int(idx) + 1
		p, err := c.getPage(ctx, pageQuery(base, idx), where, pageNo)
		if err != nil {
			return nil, err
		}
		if p.CurrentPageIndex >= 0 && p.CurrentPageIndex != idx {
			return nil, fmt.Errorf("source %s: %s: currentPageIndex %d, but %d was asked for: %w", c.name, where, p.CurrentPageIndex, idx, ErrPaging)
		}
		for _, e := range p.Users {
			if e.ClientUserID != key {
				// Not an answer to the question asked (a server that
				// ignores the filter): neither presence nor absence.
				return nil, fmt.Errorf("source %s: %s: the answer lists other users", c.name, where)
			}
			out = append(out, e)
		}
		if !p.HasNext {
			return out, nil
		}
		if p.NextPageIndex != idx+1 || pageNo >= maxLookupPages {
			return nil, fmt.Errorf("source %s: %s: nextPageIndex %d after page index %d: %w", c.name, where, p.NextPageIndex, idx, ErrPaging)
		}
		idx = p.NextPageIndex
	}
}
