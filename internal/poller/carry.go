package poller

import (
	"encoding/json"
	"log/slog"

	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/pkg/events"
)

// capRaw is the prepare stage. It removes the secrets a source's raw record
// may hold (events.ScrubRaw: Veeam's credentials, VPP's inviteCode and
// inviteUrl, anything named like a password or token), then cuts the raw
// record to Config.MaxRawBytes (events.CapRaw), so that one oversized
// record does not make its events and KV writes too large to store. raw is
// not part of a user's fingerprint, so neither changes an event's type.
//
// It prepares the users given: those a run can publish or store, the new
// and changed ones (diff.Plan.Changed; every user when the run stores a
// baseline). The others' raw records go nowhere, and scrubbing them cost a
// steady-state run a quarter of its CPU.
func (p *Poller) capRaw(users []events.User, log *slog.Logger) {
	cut, dropped := 0, 0
	for i := range users {
		u := &users[i]
		scrubbed, err := events.ScrubRaw(u.Raw)
		if err != nil {
			// A record we cannot parse may hide a secret anywhere: carry
			// none of it rather than risk it.
			dropped++
			scrubbed = nil
		}
		u.Raw = scrubbed
		var was bool
		if u.Raw, was = events.CapRaw(u.Raw, p.cfg.MaxRawBytes); was {
			cut++
			if cut <= 3 {
				log.Warn("a user's record is larger than MAX_RAW_BYTES; its events carry it cut", "user", shortID(u.ID), "max_raw_bytes", p.cfg.MaxRawBytes)
			}
		}
	}
	if cut > 3 {
		log.Warn("records cut to MAX_RAW_BYTES in this snapshot", "users", cut)
	}
	if dropped > 0 {
		log.Warn("raw records that are not valid JSON are not carried", "users", dropped)
	}
}

// uncarried is a user whose events or state this run cannot store.
type uncarried struct {
	id    string
	bytes int
}

// carry is the carry stage. An event too large to store (a long user name
// is in data.user, data.previous and data.changes) is slimmed (events.Slim:
// the previous state's and the changes' long values cut, with a marker;
// data.user stays whole); the KV keeps the whole record. It then leaves out of
// the run every user whose KV record, or whose event even slimmed, would
// still be larger than the server accepts (say a 2 MB user name), so that
// the other users of the run are published and committed. The users left
// out keep their previous state and are tried again, and reported again,
// by every run until their record shrinks.
func (p *Poller) carry(evs []events.Event, writes []diff.Write) ([]events.Event, []diff.Write, []uncarried) {
	limit := p.cfg.MaxPayload - payloadMargin
	bad := map[string]int{}
	for i, e := range evs {
		n := eventSize(e)
		if n <= limit {
			continue
		}
		if slim, err := events.Slim(e, limit-(n-len(e.Data()))); err == nil && eventSize(slim) <= limit {
			evs[i] = slim
			continue
		}
		bad[e.Subject()] = max(bad[e.Subject()], n)
	}
	for _, w := range writes {
		if n := recordSize(w.User, limit); n > limit {
			bad[w.User.ID] = max(bad[w.User.ID], n)
		}
	}
	if len(bad) == 0 {
		return evs, writes, nil
	}
	keptEvs := make([]events.Event, 0, len(evs))
	for _, e := range evs {
		if _, ok := bad[e.Subject()]; !ok {
			keptEvs = append(keptEvs, e)
		}
	}
	keptWrites := make([]diff.Write, 0, len(writes))
	for _, w := range writes {
		if _, ok := bad[w.User.ID]; !ok {
			keptWrites = append(keptWrites, w)
		}
	}
	out := make([]uncarried, 0, len(bad))
	for id, n := range bad {
		out = append(out, uncarried{id: id, bytes: n})
	}
	return keptEvs, keptWrites, out
}

// payloadMargin leaves room below the server's maximum payload for what
// the estimates below do not count exactly.
const payloadMargin = 4 << 10

// eventSize is an upper estimate of an event's message: its data, and its
// headers, the id among them percent-encoded (three bytes a byte at most).
func eventSize(e events.Event) int {
	return len(e.Data()) + 3*len(e.Subject()) + 1024
}

// recordSize is the size of a user's KV record: estimated from its fields
// (escaping can at most sextuple a string), and encoded only when the
// estimate comes near the limit.
func recordSize(u events.User, limit int) int {
	n := len(u.Raw) + 512
	for _, f := range []string{u.ID, u.Email, u.UserName, u.FirstName, u.LastName, u.Status, u.Role, u.OrganizationID, u.ClientUserID, u.Source, u.SourceKind} {
		n += 6 * len(f)
	}
	if n <= limit {
		return n
	}
	b, err := json.Marshal(u)
	if err != nil {
		return n
	}
	return len(b) + 128 // the record's fingerprint and framing
}
