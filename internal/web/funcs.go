package web

import (
	"fmt"
	"html/template"
	"io/fs"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// parseTemplates parses each page with the layout.
func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimPrefix(n, "templates/")
		if name == "layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var funcs = template.FuncMap{
	"shown":     shown,
	"ago":       ago,
	"when":      func(t time.Time) string { return stamp(t) },
	"typeLabel": typeLabel,
	"userURL":   userURL,
	"typeClass": func(t string) string { return "t-" + strings.TrimPrefix(t, "user.") },
	"asofURL":   func(source string) string { return "/asof?" + url.Values{"source": {source}}.Encode() },
	"lower":     strings.ToLower,
	"itoa":      itoa,
	"ms":        func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) },
	"fullName":  func(a, b string) string { return strings.TrimSpace(a + " " + b) },
	"mentions":  func(s string, n int) bool { return strings.Contains(s, strconv.Itoa(n)) },
	"statusClass": func(s string) string {
		switch s {
		case stDelivered:
			return "ok"
		case stDead:
			return "bad"
		}
		return "warn"
	},
}

func itoa(n int) string { return strconv.Itoa(n) }

// stamp is a time as the console writes it: UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long before now t was, roughly: "3 min", "2 h", "5 days".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "never"
	case d < time.Minute:
		return "less than a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// shownWidth bounds a value from a directory on a page.
const shownWidth = 300

// shown makes a value from a directory safe to show beyond what
// html/template's escaping does: a bidirectional control (U+202E and its
// kind) would reverse the text after it, and other invisible format or
// control characters would hide what a value really is, so each is
// written as a visible ‹U+202E›; and a very long value is cut.
func shown(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n >= shownWidth {
			b.WriteString("…")
			break
		}
		n++
		if r == unicode.ReplacementChar || unicode.Is(unicode.Cf, r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			fmt.Fprintf(&b, "‹U+%04X›", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
