package events

import (
	"fmt"
	"strings"
)

// SlimFieldBytes is how much of a long value Slim keeps.
const SlimFieldBytes = 4 << 10

// ExtCut is the CloudEvents extension Slim sets on an event it made
// smaller: the parts it cut, comma-separated ("previous", "changes",
// "raw").
const ExtCut = "rollcallcut"

// Slim makes an event too large to store smaller, keeping its envelope
// (id, type, subject) and data.user's tracked fields whole, as the state
// the event reports. It cuts, in this order and only as far as needed to
// fit max bytes of data: every long value of data.previous and its raw
// record ("previous"), the long from and to values of data.changes
// ("changes"), and data.user's raw record ("raw"). A cut value keeps its
// first SlimFieldBytes bytes followed by "…[cut: N bytes]"; a raw record is
// cut by CapRaw. The ExtCut extension says what was cut. The id stays the
// one the full change gives, so a rerun that sends the event in full is a
// duplicate of it. The state a poller keeps is never slimmed.
func Slim(e Event, max int) (Event, error) {
	d, err := DecodeData(e)
	if err != nil {
		return e, err
	}
	var cut []string
	out := e.Clone()
	fits := func() (bool, error) {
		if err := out.SetData(e.DataContentType(), d); err != nil {
			return false, fmt.Errorf("events: slim %s: %w", e.ID(), err)
		}
		return len(out.Data()) <= max, nil
	}
	steps := []struct {
		part string
		cut  func()
	}{
		{"previous", func() {
			if d.Previous != nil {
				p := *d.Previous
				slimUser(&p)
				p.Raw, _ = CapRaw(p.Raw, SlimFieldBytes)
				d.Previous = &p
			}
		}},
		{"changes", func() {
			for i := range d.Changes {
				d.Changes[i].From = cutValue(d.Changes[i].From)
				d.Changes[i].To = cutValue(d.Changes[i].To)
			}
		}},
		{"raw", func() { d.User.Raw, _ = CapRaw(d.User.Raw, SlimFieldBytes) }},
	}
	for _, st := range steps {
		st.cut()
		cut = append(cut, st.part)
		ok, err := fits()
		if err != nil {
			return e, err
		}
		if ok {
			break
		}
	}
	out.SetExtension(ExtCut, strings.Join(cut, ","))
	return out, nil
}

func slimUser(u *User) {
	for _, f := range []*string{&u.Email, &u.UserName, &u.FirstName, &u.LastName, &u.Status, &u.Role, &u.OrganizationID, &u.ClientUserID} {
		*f = cutValue(*f)
	}
}

// cutValue keeps the first SlimFieldBytes bytes of a long value (whole
// UTF-8 characters) and says how long it was.
func cutValue(s string) string {
	if len(s) <= SlimFieldBytes+64 {
		return s
	}
	return strings.ToValidUTF8(s[:SlimFieldBytes], "") + fmt.Sprintf("…[cut: %d bytes]", len(s))
}
