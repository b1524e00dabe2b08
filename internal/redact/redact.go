// Package redact makes text that rollcall quotes from elsewhere (a server's
// error message, a response body, a library's error) safe to log, keep in a
// source's health and return from /readyz: every secret is replaced in each
// spelling a server may echo it in, control characters are stripped, and the
// text is cut to a bound — in that order, so that a cut never leaves the
// start of a secret behind.
//
// One Redactor serves the Veeam and VPP sources, the webhook and Slack sinks
// (through their shared post package) and the NATS client.
package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Marker is what a Redactor puts in place of a secret unless WithMarker
// says otherwise.
const Marker = "[redacted]"

// Ellipsis ends an excerpt that was cut.
const Ellipsis = "…"

// Redactor replaces secrets in text. A nil *Redactor knows no secrets and
// still cleans and cuts excerpts. It is safe for concurrent use.
type Redactor struct {
	forms   []string // every spelling of every secret, longest first
	longest int      // len(forms[0])
	marker  string
}

// New returns a Redactor for secrets; empty strings are ignored. Each secret
// is also recognised as it looks
//   - URL-escaped: as a query value, as a path segment and as a URL's
//     userinfo password, with upper- or lower-case hex digits;
//   - JSON-escaped inside a string, with and without HTML escaping and with
//     "/" written as `\/`;
//   - base64-encoded (standard and URL alphabets, padded or not);
//   - percent-decoded, when the secret was given escaped;
//   - without trailing "=" padding, when it has some (a base64 token, such
//     as an sToken, whose padding an echo escaped differently);
//   - as the excerpts of this package show it (control characters dropped,
//     whitespace collapsed), when it contains such characters.
func New(secrets ...string) *Redactor {
	seen := map[string]bool{}
	var forms []string
	var add func(s string)
	add = func(s string) {
		if s == "" || seen[s] {
			return
		}
		seen[s] = true
		for _, f := range spellings(s) {
			if f != "" && !slices.Contains(forms, f) {
				forms = append(forms, f)
			}
		}
		if u, err := url.PathUnescape(s); err == nil && u != s {
			add(u)
		}
		if t := strings.TrimRight(s, "="); t != s && len(t) >= 8 {
			add(t)
		}
	}
	for _, s := range secrets {
		add(s)
	}
	// Longest first, so that no part of a longer spelling is left behind.
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	r := &Redactor{forms: forms, marker: Marker}
	if len(forms) > 0 {
		r.longest = len(forms[0])
	}
	return r
}

// spellings are the ways s may appear in text.
func spellings(s string) []string {
	userinfo := strings.TrimPrefix(url.UserPassword("", s).String(), ":")
	out := []string{s}
	for _, esc := range []string{url.QueryEscape(s), url.PathEscape(s), userinfo} {
		out = append(out, esc, lowerHex(esc))
	}
	for _, html := range []bool{true, false} {
		j := jsonEscape(s, html)
		out = append(out, j, strings.ReplaceAll(j, "/", `\/`))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(s)))
	}
	out = append(out, clean(s, -1).text)
	return out
}

// jsonEscape is s as it appears between the quotes of a JSON string.
func jsonEscape(s string, html bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		return s
	}
	out := strings.TrimSuffix(b.String(), "\n")
	return strings.TrimSuffix(strings.TrimPrefix(out, `"`), `"`)
}

// lowerHex writes the hex digits of every percent escape in lower case.
func lowerHex(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = lower(b[i+1])
			b[i+2] = lower(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// WithMarker returns a copy of r that writes marker in place of a secret.
func (r *Redactor) WithMarker(marker string) *Redactor {
	cp := Redactor{marker: marker}
	if r != nil {
		cp.forms, cp.longest = r.forms, r.longest
	}
	return &cp
}

func (r *Redactor) mark() string {
	if r == nil {
		return Marker
	}
	return r.marker
}

// String returns s with every spelling of every secret replaced.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	for _, f := range r.forms {
		s = strings.ReplaceAll(s, f, r.marker)
	}
	return s
}

// Err returns err with its message redacted, or err itself when there was
// nothing to redact. errors.Is still sees through the result; errors.As and
// Unwrap do not, since the wrapped error (a *url.Error, say) would print the
// secret.
func (r *Redactor) Err(err error) error {
	if err == nil {
		return nil
	}
	msg := r.String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// Excerpt returns s made safe to quote: control characters and terminal
// escape sequences dropped, line breaks, tabs and other white space written
// as single spaces, invalid UTF-8 as U+FFFD, every secret replaced, and the
// result cut to at most limit bytes (ending in Ellipsis when anything was
// cut). The work is bounded by limit, not by len(s), except for a long run
// of characters that are dropped.
func (r *Redactor) Excerpt(s string, limit int) string {
	return r.excerpt(s, limit, false)
}

// ExcerptPrefix is Excerpt for the first bytes of a longer text (a response
// body read up to a limit): a rune split by that cut is dropped, and so is
// the start of a secret the cut left at the end.
func (r *Redactor) ExcerptPrefix(prefix string, limit int) string {
	return r.excerpt(prefix, limit, true)
}

// Excerpt is Excerpt of a Redactor without secrets.
func Excerpt(s string, limit int) string { return (*Redactor)(nil).Excerpt(s, limit) }

func (r *Redactor) excerpt(s string, limit int, prefix bool) string {
	if limit <= 0 {
		return ""
	}
	if prefix {
		s = trimSplitRune(s)
	}
	// A secret that starts within the first limit bytes ends within
	// limit+longest of them: clean that much, redact it, and only then cut.
	longest := 0
	if r != nil {
		longest = r.longest
	}
	c := clean(s, limit+longest+len(Ellipsis))
	text := r.String(c.text)
	cut := c.cut || prefix
	if cut {
		// Whatever secret was cut in two left its start at the end.
		text = r.trimPartial(text)
	}
	if len(text) <= limit && !cut {
		return text
	}
	return r.clip(text, limit)
}

// clip cuts text to at most limit bytes, Ellipsis included, at a rune
// boundary and not inside a marker.
func (r *Redactor) clip(text string, limit int) string {
	if limit < len(Ellipsis) {
		return ""
	}
	k := min(len(text), limit-len(Ellipsis))
	for k > 0 && k < len(text) && !utf8.RuneStart(text[k]) {
		k--
	}
	m := r.mark()
	for j := max(0, k-len(m)+1); j < k; j++ {
		if strings.HasPrefix(text[j:], m) && j+len(m) > k {
			k = j
			break
		}
	}
	return strings.TrimRight(text[:k], " ") + Ellipsis
}

// trimPartial drops the longest end of text that is the start of a
// spelling of a secret.
func (r *Redactor) trimPartial(text string) string {
	if r == nil {
		return text
	}
	cut := len(text)
	for _, f := range r.forms {
		for i := max(0, len(text)-len(f)+1); i < cut; i++ {
			if text[i] == f[0] && strings.HasPrefix(f, text[i:]) {
				cut = i
				break
			}
		}
	}
	return text[:cut]
}

// trimSplitRune drops an incomplete UTF-8 sequence at the end of s.
func trimSplitRune(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			break
		}
	}
	return s
}

type cleaned struct {
	text string
	cut  bool // printable text remained beyond the budget
}

// clean drops control characters, terminal escape sequences and invisible
// formatting characters, writes every run of white space as one space (none
// at either end) and invalid UTF-8 as U+FFFD. It stops before a printable
// character that would go beyond budget bytes (negative: no bound).
func clean(s string, budget int) cleaned {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0x1b { // ESC
			i = skipEscape(s, i)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\u009b': // CSI as one C1 character
			i = skipCSI(s, i)
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			continue
		}
		n := utf8.RuneLen(r) // invalid UTF-8 is written as U+FFFD
		if space {
			n++
		}
		if budget >= 0 && b.Len()+n > budget {
			return cleaned{text: b.String(), cut: true}
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return cleaned{text: b.String()}
}

// skipEscape returns the index after the escape sequence that starts with
// the ESC at s[i]: a CSI sequence (ESC [ … final byte) whole, any other
// escape as ESC and the character after it.
func skipEscape(s string, i int) int {
	i++
	if i < len(s) && s[i] == '[' {
		return skipCSI(s, i+1)
	}
	if i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	return i
}

// skipCSI skips the parameter and intermediate bytes and the final byte of
// a control sequence whose introducer ends before s[i].
func skipCSI(s string, i int) int {
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}
