package events

import (
	"fmt"
	"strings"
)

// SlimFieldBytes is how much of a long field value Slim keeps.
const SlimFieldBytes = 4 << 10

// Slim makes an event whose payload is too large to store smaller, keeping
// its id, type, subject and every value shorter than SlimFieldBytes: a
// longer field value of data.user, data.previous or data.changes keeps its
// first SlimFieldBytes bytes followed by "…[cut: N bytes]", and both raw
// records are cut to SlimFieldBytes (CapRaw). The event still says who
// changed and what, and its id is still the one the full change gives (so
// a rerun that sends the full event is a duplicate of it). The state a
// poller keeps is never slimmed.
func Slim(e Event) (Event, error) {
	d, err := DecodeData(e)
	if err != nil {
		return e, err
	}
	slimUser(&d.User)
	if d.Previous != nil {
		p := *d.Previous
		slimUser(&p)
		d.Previous = &p
	}
	for i := range d.Changes {
		d.Changes[i].From = cutValue(d.Changes[i].From)
		d.Changes[i].To = cutValue(d.Changes[i].To)
	}
	out := e.Clone()
	if err := out.SetData(e.DataContentType(), d); err != nil {
		return e, fmt.Errorf("events: slim %s: %w", e.ID(), err)
	}
	return out, nil
}

func slimUser(u *User) {
	for _, f := range []*string{&u.Email, &u.UserName, &u.FirstName, &u.LastName, &u.Status, &u.Role, &u.OrganizationID, &u.ClientUserID} {
		*f = cutValue(*f)
	}
	u.Raw, _ = CapRaw(u.Raw, SlimFieldBytes)
}

// cutValue keeps the first SlimFieldBytes bytes of a long value (whole
// UTF-8 characters) and says how long it was.
func cutValue(s string) string {
	if len(s) <= SlimFieldBytes+64 {
		return s
	}
	return strings.ToValidUTF8(s[:SlimFieldBytes], "") + fmt.Sprintf("…[cut: %d bytes]", len(s))
}
