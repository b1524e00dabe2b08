package console

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rollcall/rollcall/pkg/events"
)

// MaxValue is how many bytes of one value (an id, an e-mail address, a
// role, …) a text line shows; a longer one is cut and ends in "…".
const MaxValue = 80

// verbs name what each event type says happened.
var verbs = map[string]string{
	events.TypeRegistered:  "registered",
	events.TypeAssociated:  "associated",
	events.TypeRetired:     "retired",
	events.TypeRoleChanged: "role changed",
	events.TypeUpdated:     "updated",
}

// implied is the field an event type is about: its change is written
// without the field's name ("associated → retired", not "status
// associated → retired").
var implied = map[string]string{
	events.TypeRegistered:  "status",
	events.TypeAssociated:  "status",
	events.TypeRetired:     "status",
	events.TypeRoleChanged: "role",
}

// Line is the text form of e, one line without its newline: the time (UTC),
// the source, the user (id, then e-mail address or else user name) and
// what happened, columns two spaces apart:
//
//	2026-12-04T10:15:03Z  vpp  user 118 person118@school.example  associated → retired
//	2026-12-04T10:15:03Z  veeam  user c372… Alpha  role changed: CompanyAdministrator → CompanyOwner
//	2026-12-04T10:15:03Z  veeam  user c372… a@x.example  updated: email a@x.example → b@x.example
//
// Every value from the directory is shown as it is when it is plain
// printable text, and otherwise quoted in Go's syntax ("a\nb", "\x1b[31m",
// "" for an empty value), so a newline, a control character or a terminal
// escape sequence can neither break the line nor reach the terminal; each
// value is cut at MaxValue bytes.
func Line(e events.Event) string {
	var b strings.Builder
	b.WriteString(e.Time().UTC().Format(time.RFC3339))
	b.WriteString("  ")
	b.WriteString(value(events.SourceName(e)))
	b.WriteString("  user ")
	b.WriteString(value(e.Subject()))
	verb, ok := verbs[e.Type()]
	if !ok {
		verb = value(e.Type())
	}
	d, err := events.DecodeData(e)
	if err != nil {
		b.WriteString("  ")
		b.WriteString(verb)
		b.WriteString(" (data unreadable)")
		return b.String()
	}
	if who := whoOf(d.User); who != "" {
		b.WriteString(" ")
		b.WriteString(value(who))
	}
	b.WriteString("  ")
	b.WriteString(what(e.Type(), verb, d))
	return b.String()
}

// whoOf is the name a person knows the user by: the e-mail address, or
// else the user name.
func whoOf(u events.User) string {
	if u.Email != "" {
		return u.Email
	}
	return u.UserName
}

// what says what happened: the verb and the changes. A status change whose
// new value is the verb itself stands alone ("associated → retired").
func what(typ, verb string, d events.Data) string {
	field := implied[typ]
	var parts []string
	for _, c := range d.Changes {
		ch := value(c.From) + " → " + value(c.To)
		if c.Field != field {
			ch = value(c.Field) + " " + ch
		}
		parts = append(parts, ch)
	}
	if len(parts) == 0 {
		if typ != events.TypeRegistered {
			return verb
		}
		// A new user: its state, as far as it is not the verb.
		var state []string
		if s := d.User.Status; s != "" && !strings.EqualFold(s, events.StatusRegistered) {
			state = append(state, "as "+value(strings.ToLower(s)))
		}
		if d.User.Role != "" {
			state = append(state, "role "+value(d.User.Role))
		}
		if len(state) == 0 {
			return verb
		}
		return verb + " " + strings.Join(state, ", ")
	}
	if len(d.Changes) > 0 && d.Changes[0].Field == field && strings.EqualFold(d.Changes[0].To, verb) {
		return strings.Join(parts, ", ")
	}
	return verb + ": " + strings.Join(parts, ", ")
}

// Value shows s safely on one line, as Line shows every value: as it is
// when it is printable text without spaces, quotes or backslashes, quoted
// in Go's syntax otherwise; cut at MaxValue bytes.
func Value(s string) string { return show(s, false) }

// Cell is Value for a table's cell: single spaces between words are
// plain text too ("Ada Lovelace"), so only what could break the table or
// reach the terminal is quoted.
func Cell(s string) string { return show(s, true) }

func value(s string) string { return show(s, false) }

func show(s string, spaces bool) string {
	cut := false
	if len(s) > MaxValue {
		k := MaxValue
		for k > 0 && !utf8.RuneStart(s[k]) {
			k--
		}
		s, cut = s[:k], true
	}
	if s == "" || !plain(s, spaces) {
		s = strconv.Quote(s)
	}
	if cut {
		s += "…"
	}
	return s
}

func plain(s string, spaces bool) bool {
	if spaces && (strings.TrimSpace(s) != s || strings.Contains(s, "  ")) {
		return false
	}
	for _, r := range s {
		if spaces && r == ' ' {
			continue
		}
		if r == utf8.RuneError || r == '"' || r == '\\' || r == '→' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
