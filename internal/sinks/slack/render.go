package slack

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rollcall/rollcall/pkg/events"
)

// Message is the JSON payload of an incoming webhook: Block Kit blocks plus
// the plain text Slack shows in notifications and where blocks cannot be
// rendered.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks,omitempty"`
}

// Block is the subset of Block Kit the sink uses: section (Text and/or
// Fields) and context (Elements).
type Block struct {
	Type     string `json:"type"`
	Text     *Text  `json:"text,omitempty"`
	Fields   []Text `json:"fields,omitempty"`
	Elements []Text `json:"elements,omitempty"`
}

// Text is a Block Kit text object.
type Text struct {
	Type string `json:"type"` // "mrkdwn" or "plain_text"
	Text string `json:"text"`
}

// maxValue bounds each directory value in a message. Block Kit rejects a
// section over 3000 characters with invalid_blocks, which would make the
// event undeliverable for good.
const maxValue = 200

// Render builds the message for one event: who, what happened, which
// source, and when.
func Render(e events.Event) (Message, error) {
	d, err := events.DecodeData(e)
	if err != nil {
		return Message{}, fmt.Errorf("slack: render: %w", err)
	}
	u := d.User
	who := Who(u)
	what := What(e.Type(), d)
	src := u.Source
	if src == "" {
		src = events.SourceName(e)
	}
	kind := u.SourceKind
	if kind == "" {
		kind, _ = e.Extensions()[events.ExtSourceKind].(string)
	}
	when := e.Time().UTC().Format(time.RFC3339)

	fields := []Text{
		mrkdwn("*Source*\n" + esc(src) + " (" + esc(kind) + ")"),
		mrkdwn("*When*\n" + when),
		mrkdwn("*User ID*\n" + esc(u.ID)),
	}
	if u.UserName != "" && u.UserName != who {
		fields = append(fields, mrkdwn("*User name*\n"+esc(u.UserName)))
	}
	if u.Email != "" && u.Email != who {
		fields = append(fields, mrkdwn("*Email*\n"+esc(u.Email)))
	}
	if u.Status != "" {
		fields = append(fields, mrkdwn("*Status*\n"+esc(u.Status)))
	}
	if u.Role != "" {
		fields = append(fields, mrkdwn("*Role*\n"+esc(u.Role)))
	}
	return Message{
		Text: fmt.Sprintf("%s %s (source %s, %s)", esc(who), esc(what), esc(src), when),
		Blocks: []Block{
			{Type: "section", Text: &Text{Type: "mrkdwn", Text: "*" + esc(who) + "* " + esc(what)}},
			{Type: "section", Fields: fields},
			{Type: "context", Elements: []Text{mrkdwn(esc(e.Type()) + " · event " + esc(e.ID()))}},
		},
	}, nil
}

// Who names the user the way a reader recognises them: email, else user
// name, else the source's id.
func Who(u events.User) string {
	switch {
	case u.Email != "":
		return clip(u.Email)
	case u.UserName != "":
		return clip(u.UserName)
	case u.ID != "":
		return clip(u.ID)
	}
	return "unknown user"
}

// What says what happened, in words, e.g. "role changed A → B".
func What(typ string, d events.Data) string {
	switch typ {
	case events.TypeRegistered:
		return "registered"
	case events.TypeAssociated:
		return "associated"
	case events.TypeRetired:
		if d.Reason == events.ReasonRemoved {
			return "retired (removed from directory)"
		}
		return "retired"
	case events.TypeRoleChanged:
		for _, c := range d.Changes {
			if c.Field == "role" {
				return "role changed " + arrow(c)
			}
		}
		if d.Previous != nil {
			return "role changed " + arrow(events.Change{From: d.Previous.Role, To: d.User.Role})
		}
		return "role changed to " + value(d.User.Role)
	case events.TypeUpdated:
		if len(d.Changes) == 0 {
			return "updated"
		}
		parts := make([]string, 0, len(d.Changes))
		for _, c := range d.Changes {
			parts = append(parts, c.Field+" "+arrow(c))
		}
		return "updated: " + strings.Join(parts, ", ")
	}
	return typ
}

func arrow(c events.Change) string { return value(c.From) + " → " + value(c.To) }

func value(s string) string {
	if s == "" {
		return "(none)"
	}
	return clip(s)
}

func clip(s string) string {
	if utf8.RuneCountInString(s) <= maxValue {
		return s
	}
	r := []rune(s)
	return string(r[:maxValue-1]) + "…"
}

func mrkdwn(s string) Text { return Text{Type: "mrkdwn", Text: s} }

// esc applies Slack's escaping of &, < and >, so that a user name like
// "<!channel>" or "<https://evil|click>" stays text instead of pinging a
// channel or becoming a link.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Words for each event type in a digest's counts.
var typeWords = map[string]string{
	events.TypeRegistered:  "registered",
	events.TypeAssociated:  "associated",
	events.TypeRetired:     "retired",
	events.TypeRoleChanged: "role changed",
	events.TypeUpdated:     "updated",
}

// Block Kit limits a digest stays within: a section's text (3000) and a
// field's (2000) characters.
const (
	maxSection = 2900
	maxField   = 1900
)

// RenderDigest summarises a burst of events in one message, so that a mass
// change does not flood the channel: how many changes and when, counts per
// type and per source, the first maxUsers users with what happened to
// them ("…and N more"), and the replay command that shows every event.
// Events whose data cannot be decoded are counted but not listed.
func RenderDigest(evs []events.Event, maxUsers int) Message {
	types := map[string]int{}
	sources := map[string]int{}
	var first, last time.Time
	var lines []string
	for i, e := range evs {
		types[e.Type()]++
		if t := e.Time().UTC(); i == 0 {
			first, last = t, t
		} else if t.Before(first) {
			first = t
		} else if t.After(last) {
			last = t
		}
		d, err := events.DecodeData(e)
		src := events.SourceName(e)
		if err == nil && d.User.Source != "" {
			src = d.User.Source
		}
		sources[src]++
		if err != nil || len(lines) >= maxUsers {
			continue
		}
		lines = append(lines, "• *"+esc(Who(d.User))+"* "+esc(What(e.Type(), d))+" ("+esc(src)+")")
	}

	byType := typeCounts(types)
	bySource := sourceCounts(sources)
	when := "at " + first.Format(time.RFC3339)
	if !first.Equal(last) {
		when = "from " + first.Format(time.RFC3339) + " to " + last.Format(time.RFC3339)
	}
	head := fmt.Sprintf("%d directory changes", len(evs))
	text := fmt.Sprintf("%s: %s (%s), %s", head, strings.Join(byType, ", "), esc(strings.Join(bySource, ", ")), when)

	blocks := []Block{
		{Type: "section", Text: &Text{Type: "mrkdwn", Text: "*" + head + "* " + when}},
		{Type: "section", Fields: []Text{
			mrkdwn(clipTo("*By type*\n"+strings.Join(byType, "\n"), maxField)),
			mrkdwn(clipTo("*By source*\n"+esc(strings.Join(bySource, "\n")), maxField)),
		}},
	}
	if len(lines) > 0 {
		list := strings.Join(lines, "\n")
		if more := len(evs) - len(lines); more > 0 {
			list += fmt.Sprintf("\n…and %d more", more)
		}
		blocks = append(blocks, Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: clipTo(list, maxSection)}})
	}
	if len(evs) > 0 {
		// Whole seconds that include every event of the digest.
		since := first.Truncate(time.Second)
		until := last.Truncate(time.Second)
		if until.Before(last) {
			until = until.Add(time.Second)
		}
		blocks = append(blocks, Block{Type: "context", Elements: []Text{mrkdwn(fmt.Sprintf(
			"Digest of a burst of changes. Every event: `notifier replay --since %s --until %s`",
			since.Format(time.RFC3339), until.Format(time.RFC3339)))}})
	}
	return Message{Text: clipTo(text, maxSection), Blocks: blocks}
}

// typeCounts lists "3 retired" for each type present: known types in the
// order of events.Types, then any others by name.
func typeCounts(counts map[string]int) []string {
	var out []string
	for _, t := range events.Types {
		if n := counts[t]; n > 0 {
			out = append(out, fmt.Sprintf("%d %s", n, typeWords[t]))
		}
	}
	var other []string
	for t := range counts {
		if _, known := typeWords[t]; !known {
			other = append(other, t)
		}
	}
	slices.Sort(other)
	for _, t := range other {
		out = append(out, fmt.Sprintf("%d %s", counts[t], esc(t)))
	}
	return out
}

// sourceCounts lists "vpp 40" for each source, most events first.
func sourceCounts(counts map[string]int) []string {
	names := make([]string, 0, len(counts))
	for s := range counts {
		names = append(names, s)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := make([]string, len(names))
	for i, s := range names {
		out[i] = fmt.Sprintf("%s %d", s, counts[s])
	}
	return out
}

// clipTo cuts s to n runes, marking the cut with "…".
func clipTo(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
