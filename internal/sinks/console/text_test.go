package console_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/internal/sinks/sinktest"
	"github.com/rollcall/rollcall/pkg/events"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

var at = time.Date(2026, 12, 4, 10, 15, 3, 0, time.UTC)

func mk(t *testing.T, s events.Spec) events.Event {
	t.Helper()
	if s.Observed.IsZero() {
		s.Observed = at
	}
	e, err := events.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func vpp(id, email, status string) events.User {
	return events.User{Source: "vpp", SourceKind: events.KindVPP, ID: id, Email: email, Status: status}
}

func veeam(id, name, email, role, status string) events.User {
	return events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, UserName: name, Email: email, Role: role, Status: status}
}

// textCases are the events of the golden file, by name.
func textCases(t *testing.T) []struct {
	name string
	e    events.Event
} {
	assoc, retired := vpp("118", "person118@school.example", "associated"), vpp("118", "person118@school.example", "retired")
	owner := veeam("c3728f5b", "alpha", "", "CompanyOwner", "enabled")
	admin := owner
	admin.Role = "CompanyAdministrator"
	gone := owner
	gone.Status = events.StatusRemoved
	mailA, mailB := owner, owner
	mailA.Email, mailB.Email = "a@x.example", "b@x.example"
	disabled := mailB
	disabled.Status = "disabled"
	newMail := veeam("u1", "bob", "", "CompanyUser", "enabled")
	withMail := newMail
	withMail.Email = "bob@x.example"
	evil := veeam("evil\nid", "Eve\x1b[31mRED\x1b[0m", "", "Company\rOwner", "enabled")
	evilPrev := evil
	evilPrev.Role = "x\u202eevil"
	long := veeam(strings.Repeat("9", 300), strings.Repeat("é", 200), "", "CompanyUser", "enabled")
	spaced := veeam("s1", "Jane Q. \"JQ\" Public", "", "Company User", "enabled")
	diff := func(a, b events.User) []events.Change { return events.Diff(a, b) }
	cases := []struct {
		name string
		s    events.Spec
	}{
		{"vpp registered", events.Spec{Type: events.TypeRegistered, User: vpp("118", "person118@school.example", "registered"), Reason: events.ReasonNew}},
		{"vpp associated", events.Spec{Type: events.TypeAssociated, PrevRevision: 1, User: assoc, Previous: ptr(vpp("118", "person118@school.example", "registered")),
			Changes: diff(vpp("118", "person118@school.example", "registered"), assoc), Reason: events.ReasonStatus}},
		{"vpp retired (spec example)", events.Spec{Type: events.TypeRetired, PrevRevision: 2, User: retired, Previous: &assoc, Changes: diff(assoc, retired), Reason: events.ReasonStatus}},
		{"vpp no e-mail", events.Spec{Type: events.TypeRegistered, User: vpp("119", "", "registered"), Reason: events.ReasonNew}},
		{"veeam registered with role", events.Spec{Type: events.TypeRegistered, User: owner, Reason: events.ReasonNew}},
		{"veeam registered again", events.Spec{Type: events.TypeRegistered, PrevRevision: 5, User: owner, Previous: &gone, Changes: diff(gone, owner), Reason: events.ReasonNew}},
		{"veeam removed", events.Spec{Type: events.TypeRetired, PrevRevision: 4, User: gone, Previous: &owner, Changes: diff(owner, gone), Reason: events.ReasonRemoved}},
		{"veeam role", events.Spec{Type: events.TypeRoleChanged, PrevRevision: 3, User: owner, Previous: &admin, Changes: diff(admin, owner), Reason: events.ReasonRole}},
		{"veeam e-mail changed", events.Spec{Type: events.TypeUpdated, PrevRevision: 6, User: mailB, Previous: &mailA, Changes: diff(mailA, mailB), Reason: events.ReasonFields}},
		{"veeam e-mail added", events.Spec{Type: events.TypeUpdated, PrevRevision: 6, User: withMail, Previous: &newMail, Changes: diff(newMail, withMail), Reason: events.ReasonFields}},
		{"veeam disabled", events.Spec{Type: events.TypeUpdated, PrevRevision: 7, User: disabled, Previous: &mailB, Changes: diff(mailB, disabled), Reason: events.ReasonFields}},
		{"hostile values", events.Spec{Type: events.TypeRoleChanged, PrevRevision: 8, User: evil, Previous: &evilPrev, Changes: diff(evilPrev, evil), Reason: events.ReasonRole}},
		{"long values", events.Spec{Type: events.TypeRegistered, User: long, Reason: events.ReasonNew}},
		{"spaces and quotes", events.Spec{Type: events.TypeRegistered, User: spaced, Reason: events.ReasonNew}},
	}
	out := make([]struct {
		name string
		e    events.Event
	}, len(cases))
	for i, c := range cases {
		out[i].name, out[i].e = c.name, mk(t, c.s)
	}
	return out
}

func ptr(u events.User) *events.User { return &u }

// TestTextGolden: CONSOLE_FORMAT=text prints one readable line per event,
// as testdata/text.golden shows.
func TestTextGolden(t *testing.T) {
	var buf bytes.Buffer
	s := console.New(console.Config{Out: &buf, Format: "text"})
	var doc strings.Builder
	for _, c := range textCases(t) {
		before := buf.Len()
		if err := s.Send(context.Background(), c.e); err != nil {
			t.Fatal(err)
		}
		doc.WriteString("# " + c.name + "\n" + buf.String()[before:])
	}
	golden(t, "text.golden", doc.String())
}

// TestTextOneLine: whatever a directory holds, a text line is one line of
// printable text: no newline, carriage return, escape or other control
// character, valid UTF-8, bounded length.
func TestTextOneLine(t *testing.T) {
	cases := textCases(t)
	for _, f := range sinktest.Fixtures(t) {
		cases = append(cases, struct {
			name string
			e    events.Event
		}{f.Name, f.Event})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			line := console.Line(c.e)
			if !utf8.ValidString(line) {
				t.Errorf("invalid UTF-8: %q", line)
			}
			for _, r := range line {
				if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u202e' {
					t.Fatalf("control character %U in %q", r, line)
				}
			}
			if len(line) > 40*console.MaxValue {
				t.Errorf("%d bytes: %q", len(line), line)
			}
			if !strings.HasPrefix(line, "2026-") || !strings.Contains(line, "  user ") {
				t.Errorf("no time or user: %q", line)
			}
		})
	}
}

// TestFormatJSONDefault: without a format, and with "json", the console
// prints CloudEvents JSON, not text.
func TestFormatJSONDefault(t *testing.T) {
	for _, format := range []string{"", "json"} {
		var buf bytes.Buffer
		if err := console.New(console.Config{Out: &buf, Format: format}).Send(context.Background(), sinktest.NewEvent(t)); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(buf.String(), "{") {
			t.Errorf("format %q: %s", format, buf.String())
		}
	}
}
