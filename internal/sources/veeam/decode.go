package veeam

// Decoding of GET /api/v3/users pages and of single-user lookups.
//
// A body is read once, as a stream of tokens (jsontext.Decoder): each
// user's fields are taken from the tokens as they pass, and its record
// (events.User.Raw) is the user's own bytes, compacted. jsontext checks
// the syntax, the UTF-8 (including the surrogate pairs of \u escapes,
// which encoding/json silently replaced by U+FFFD) and that no object has
// two members of one name, at every depth; this file checks the types,
// the integers (no fractions, no overflow) and the fields that must be
// there, and names the field of every failure.
//
// Member names are matched case-insensitively, as encoding/json matched
// them: Veeam's example responses use camelCase, its OpenAPI document
// PascalCase, and servers send either. Two members whose names differ only
// in case and that match one field (instanceUid and InstanceUid) are an
// error: encoding/json kept the last, so the same body could name two
// different users depending on who reads it. Two such members that match
// no field rollcall reads (title and Title) are different names to JSON
// and are carried in the record as they came.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// page is one decoded page.
type page struct {
	users         []events.User
	total, offset int
}

// decodePage parses and normalises one page of GET /api/v3/users. Every
// failure is a *sources.DecodeError naming the page and, where known, the
// field.
func decodePage(source string, pageNo int, body []byte) (page, error) {
	r := newReader(body, false)
	defer r.release()
	p, err := r.page(source)
	if err != nil {
		field, err := r.explain(err)
		return page{}, &sources.DecodeError{Source: source, Page: pageNo, Field: field, Err: err}
	}
	return p, nil
}

// decodeLookup checks the body of a 200 to GET /api/v3/users/{id}: Veeam's
// single-resource envelope, {"data":{…}}, holding a well-formed user whose
// instanceUid is id.
func decodeLookup(source, id string, body []byte) error {
	r := newReader(body, true)
	defer r.release()
	u, err := r.lookup(source)
	if err == nil && u.ID != id {
		// Not the user asked about (a server that routes the id elsewhere,
		// as it would "me"): it proves nothing about the user's presence.
		err = &fieldError{"data.instanceUid", fmt.Errorf("the server answered with another user, %s", quoteID(u.ID))}
	}
	if err != nil {
		field, err := r.explain(err)
		if field == "" {
			return err
		}
		return fmt.Errorf("field %s: %w", field, err)
	}
	return nil
}

// fieldError is a failure about one field of a body; field "" is the
// body as a whole.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }

// reader walks one body.
type reader struct {
	dec  *jsontext.Decoder
	in   bytes.Buffer // the body; jsontext reads a bytes.Buffer in place
	body []byte
	// user is the index in data of the user being read, -1 outside
	// users; single says the body holds one user, at "data" (user 0).
	user   int
	single bool
	name   []byte // scratch for member names with escapes
	// id and text gather the strings of the user being read.
	id, text []byte
}

var readers = sync.Pool{New: func() any { return &reader{dec: jsontext.NewDecoder(bytes.NewReader(nil))} }}

func newReader(body []byte, single bool) *reader {
	r := readers.Get().(*reader)
	r.in = *bytes.NewBuffer(body)
	r.dec.Reset(&r.in)
	r.body, r.user, r.single = body, -1, single
	return r
}

// release returns r to the pool, holding on to no body.
func (r *reader) release() {
	r.in = bytes.Buffer{}
	r.dec.Reset(&r.in)
	r.body = nil
	if cap(r.text)+cap(r.id)+cap(r.name) > 64<<10 {
		r.id, r.text, r.name = nil, nil, nil // a user of megabytes
	}
	readers.Put(r)
}

// Members rollcall reads, in the order of the bits that mark them seen.
var (
	envelopeNames = []string{"meta", "data"}
	metaNames     = []string{"pagingInfo"}
	pagingNames   = []string{"total", "count", "offset"}
	userNames     = []string{"instanceUid", "organizationUid", "userName", "status", "role", "profile"}
	profileNames  = []string{"firstName", "lastName", "email"}
	lookupNames   = []string{"data"}
)

// page reads a whole page body.
func (r *reader) page(source string) (page, error) {
	var (
		metaSeen, pagingSeen, dataSeen bool
		total, count, offset           int
		haveTotal, haveCount, haveOff  bool
		users                          []events.User
	)
	err := r.root(func(i int) error {
		switch envelopeNames[i] {
		case "meta":
			return r.object("meta", metaNames, &metaSeen, func(int) error {
				return r.object("meta.pagingInfo", pagingNames, &pagingSeen, func(i int) error {
					switch pagingNames[i] {
					case "total":
						return r.integer("meta.pagingInfo.total", &total, &haveTotal)
					case "count":
						// Not used, but checked as encoding/json checked it.
						return r.integer("meta.pagingInfo.count", &count, &haveCount)
					default:
						return r.integer("meta.pagingInfo.offset", &offset, &haveOff)
					}
				})
			})
		default: // data
			var err error
			// Room for count users, when the page said so before data.
			hint := 16
			if haveCount && count > hint && count <= MaxPageSize {
				hint = count
			}
			users, dataSeen, err = r.users(source, hint)
			return err
		}
	}, envelopeNames)
	if err != nil {
		return page{}, err
	}
	switch {
	case !metaSeen:
		return page{}, &fieldError{"meta", errors.New("missing")}
	case !pagingSeen:
		return page{}, &fieldError{"meta.pagingInfo", errors.New("missing")}
	case !haveTotal || total < 0:
		return page{}, &fieldError{"meta.pagingInfo.total", errors.New("missing or negative")}
	case !haveOff || offset < 0:
		return page{}, &fieldError{"meta.pagingInfo.offset", errors.New("missing or negative")}
	case !dataSeen:
		return page{}, &fieldError{"data", errors.New("missing or null")}
	}
	return page{users: users, total: total, offset: offset}, nil
}

// lookup reads a single-user body, {"data":{…}}.
func (r *reader) lookup(source string) (events.User, error) {
	var u events.User
	seen := false
	err := r.root(func(int) error {
		if r.dec.PeekKind() == 'n' {
			_, err := r.dec.ReadToken()
			return err
		}
		seen = true
		var err error
		r.user = 0
		u, err = r.readUser(source)
		if err == nil {
			r.user = -1
		}
		return err
	}, lookupNames)
	if err != nil {
		return events.User{}, err
	}
	if !seen {
		return events.User{}, &fieldError{"data", errors.New("missing or null")}
	}
	return u, nil
}

// root reads the body's single top-level value, an object whose members
// named in names go to member. null reads as an object without members,
// as encoding/json read it into a struct; anything after the value is an
// error.
func (r *reader) root(member func(int) error, names []string) error {
	switch k := r.dec.PeekKind(); k {
	case '{':
		if err := r.members("", names, member); err != nil {
			return err
		}
	case 'n':
		if _, err := r.dec.ReadToken(); err != nil {
			return err
		}
	default:
		if err := r.dec.SkipValue(); err != nil {
			return err
		}
		return r.typeError("", k, "object")
	}
	switch _, err := r.dec.ReadToken(); {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	default:
		return &fieldError{"", fmt.Errorf("malformed json: a second value at byte %d", r.dec.InputOffset()-1)}
	}
}

// The paths below name fields relative to the user being read, if any
// (userField).

// object reads the value of the field at path: an object, whose members
// named in names go to member, or null. seen reports an object.
func (r *reader) object(path string, names []string, seen *bool, member func(int) error) error {
	switch k := r.dec.PeekKind(); k {
	case '{':
		*seen = true
		return r.members(path, names, member)
	case 'n':
		_, err := r.dec.ReadToken()
		return err
	default:
		return r.typeError(path, k, "object")
	}
}

// members reads an object, from its '{' to its '}'. A member whose name
// matches one of names, ignoring case, goes to member with its index in
// names, which must read its value; other members are skipped (and
// checked). A second member matching the same name is an error.
func (r *reader) members(path string, names []string, member func(int) error) error {
	if _, err := r.dec.ReadToken(); err != nil { // '{'
		return err
	}
	return r.rest(path, names, member)
}

// rest is members after the '{'.
func (r *reader) rest(path string, names []string, member func(int) error) error {
	var seen uint64
	for {
		if r.dec.PeekKind() == '}' {
			_, err := r.dec.ReadToken()
			return err
		}
		name, err := r.dec.ReadValue()
		if err != nil {
			return err
		}
		i, unq, err := r.match(name, names)
		if err != nil {
			return err
		}
		if i < 0 {
			if err := r.dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if seen&(1<<i) != 0 {
			return &fieldError{r.userField(join(path, names[i])), fmt.Errorf("a second member %s (names differing only in case name one field)", quoteName(unq))}
		}
		seen |= 1 << i
		if err := member(i); err != nil {
			return err
		}
	}
}

// match returns the index in names of the member name (a JSON string as
// read), compared as encoding/json compared names (bytes.EqualFold), or
// -1, and the name unquoted.
func (r *reader) match(name jsontext.Value, names []string) (int, []byte, error) {
	unq := name[1 : len(name)-1]
	if bytes.IndexByte(unq, '\\') >= 0 {
		var err error
		if r.name, err = jsontext.AppendUnquote(r.name[:0], name); err != nil {
			return -1, nil, err // cannot happen: the decoder validated the name
		}
		unq = r.name
	}
	ascii := true
	for _, c := range unq {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	for i, n := range names {
		switch {
		case !ascii:
			// Some non-ASCII letters fold to ASCII ones (K, the Kelvin
			// sign, to k).
			if bytes.EqualFold(unq, []byte(n)) {
				return i, unq, nil
			}
		case len(unq) == len(n) && asciiEqualFold(unq, n):
			return i, unq, nil
		}
	}
	return -1, unq, nil
}

// asciiEqualFold is bytes.EqualFold for ASCII a and b of one length.
func asciiEqualFold(a []byte, b string) bool {
	for i := range a {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// users reads data: an array of users, or null (present false).
func (r *reader) users(source string, capHint int) (users []events.User, present bool, err error) {
	switch k := r.dec.PeekKind(); k {
	case '[':
	case 'n':
		_, err := r.dec.ReadToken()
		return nil, false, err
	default:
		return nil, false, r.typeError("data", k, "array")
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, false, err
	}
	users = make([]events.User, 0, capHint)
	for i := 0; ; i++ {
		if r.dec.PeekKind() == ']' {
			_, err := r.dec.ReadToken()
			r.user = -1
			return users, true, err
		}
		r.user = i
		u, err := r.readUser(source)
		if err != nil {
			return nil, false, err // r.user stays, for explain
		}
		users = append(users, u)
	}
}

// readUser reads one user object and normalises it.
func (r *reader) readUser(source string) (events.User, error) {
	if k := r.dec.PeekKind(); k != '{' {
		// Read it first: a syntax error or invalid UTF-8 in it comes
		// before its type, as it did.
		if err := r.dec.SkipValue(); err != nil {
			return events.User{}, err
		}
		return events.User{}, &fieldError{r.userPath(), errors.New("not an object")}
	}
	// The strings are gathered in r.id (the id) and r.text (the others),
	// so that a user costs two string allocations rather than eight. The
	// id has its own: it may be kept after the user's other fields.
	var (
		id                                         span
		org, name, status, role, first, last, mail span
		profile                                    bool
	)
	r.id, r.text = r.id[:0], r.text[:0]
	if _, err := r.dec.ReadToken(); err != nil { // '{'
		return events.User{}, err
	}
	start := int(r.dec.InputOffset()) - 1
	err := r.rest("", userNames, func(i int) error {
		switch i {
		case 0:
			return r.str("instanceUid", &r.id, &id)
		case 1:
			return r.str("organizationUid", &r.text, &org)
		case 2:
			return r.str("userName", &r.text, &name)
		case 3:
			return r.str("status", &r.text, &status)
		case 4:
			return r.str("role", &r.text, &role)
		default:
			return r.object("profile", profileNames, &profile, func(i int) error {
				switch i {
				case 0:
					return r.str("profile.firstName", &r.text, &first)
				case 1:
					return r.str("profile.lastName", &r.text, &last)
				default:
					return r.str("profile.email", &r.text, &mail)
				}
			})
		}
	})
	if err != nil {
		return events.User{}, err
	}
	end := int(r.dec.InputOffset())
	if len(r.id) == 0 {
		return events.User{}, &fieldError{r.userField("instanceUid"), errors.New("missing or empty")}
	}
	lower := asciiLower(r.text[status.from:status.to])
	text := string(r.text)
	u := events.User{
		Source:         source,
		SourceKind:     events.KindVeeam,
		ID:             string(r.id),
		UserName:       name.of(text),
		Status:         status.of(text),
		Role:           role.of(text),
		OrganizationID: org.of(text),
		Email:          mail.of(text),
		FirstName:      first.of(text),
		LastName:       last.of(text),
		Raw:            compact(r.body[start:end]),
	}
	if !lower {
		u.Status = strings.ToLower(u.Status)
	}
	return u, nil
}

// span is where a string is in a scratch buffer.
type span struct{ from, to int }

func (s span) of(text string) string { return text[s.from:s.to] }

// asciiLower lower-cases b in place and reports true if it is ASCII;
// otherwise it leaves it and reports false (strings.ToLower's job).
func asciiLower(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return true
}

// str reads the value of the field at path: a string, appended unquoted
// to buf at sp, or null (left empty).
func (r *reader) str(path string, buf *[]byte, sp *span) error {
	switch k := r.dec.PeekKind(); k {
	case '"':
		v, err := r.dec.ReadValue()
		if err != nil {
			return err
		}
		from := len(*buf)
		if bytes.IndexByte(v, '\\') < 0 {
			*buf = append(*buf, v[1:len(v)-1]...)
		} else if *buf, err = jsontext.AppendUnquote(*buf, v); err != nil {
			return err // cannot happen: the decoder validated it
		}
		*sp = span{from, len(*buf)}
		return nil
	case 'n':
		_, err := r.dec.ReadToken()
		return err
	default:
		return r.typeError(path, k, "string")
	}
}

// integer reads the value of the field at path: an integer that fits an
// int (have true), or null (have false).
func (r *reader) integer(path string, dst *int, have *bool) error {
	switch k := r.dec.PeekKind(); k {
	case '0':
		v, err := r.dec.ReadValue()
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
		if err != nil {
			return &fieldError{r.userField(path), fmt.Errorf("got json number %s, want an integer that fits %d bits", excerpt(v), strconv.IntSize)}
		}
		*dst, *have = int(n), true
		return nil
	case 'n':
		_, err := r.dec.ReadToken()
		return err
	default:
		return r.typeError(path, k, "number")
	}
}

// typeError is the error for a value of kind k where want was expected.
// A kind of 0 is the decoder's error, which it returns instead.
func (r *reader) typeError(path string, k jsontext.Kind, want string) error {
	var got string
	switch k {
	case '"':
		got = "string"
	case '0':
		got = "number"
	case 't', 'f':
		got = "bool"
	case 'n':
		got = "null"
	case '{':
		got = "object"
	case '[':
		got = "array"
	default:
		_, err := r.dec.ReadToken()
		if err == nil {
			err = errors.New("unexpected token")
		}
		return err
	}
	return &fieldError{r.userField(path), fmt.Errorf("got json %s, want %s", got, want)}
}

// userPath is the field of the user being read.
func (r *reader) userPath() string { return r.userField("") }

// userField names field (a path below the user, or "") of the user being
// read.
func (r *reader) userField(field string) string {
	switch {
	case r.user < 0:
		return field
	case r.single:
		return join("data", field)
	}
	return join("data["+strconv.Itoa(r.user)+"]", field)
}

func join(path, name string) string {
	switch {
	case path == "":
		return name
	case name == "":
		return path
	}
	return path + "." + name
}

// explain turns an error of the reader into the field it is about and
// the error to report.
func (r *reader) explain(err error) (string, error) {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe.field, fe.err
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		switch {
		case errors.Is(se.Err, jsontext.ErrDuplicateName):
			return pointerField(se.JSONPointer), errors.New("a second member of the same name")
		case se.Err.Error() == "invalid UTF-8":
			// Named by the user it is in, as before.
			return r.userPath(), fmt.Errorf("invalid utf-8 at byte %d", se.ByteOffset)
		case strings.Contains(se.Err.Error(), "surrogate"):
			// Not quoted: the escape's text runs on into the body.
			return r.userPath(), fmt.Errorf("invalid utf-8 at byte %d: a \\u escape of a lone surrogate", se.ByteOffset)
		}
		return "", fmt.Errorf("malformed json at byte %d: %v", se.ByteOffset, se.Err)
	}
	if err == io.EOF {
		return "", errors.New("malformed json: empty body")
	}
	return "", err
}

// pointerField turns a JSON pointer into the field notation of errors:
// /data/3/profile/email is data[3].profile.email. Names that are not
// plain words are quoted and cut.
func pointerField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		switch {
		case tok != "" && strings.Trim(tok, "0123456789") == "":
			b.WriteString("[" + tok + "]")
		case plainName(tok):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(tok)
		default:
			b.WriteString("[" + quoteName([]byte(tok)) + "]")
		}
		if b.Len() > fieldLimit {
			break
		}
	}
	// Every part is ASCII (names are quoted with QuoteToASCII), so any cut
	// is a character boundary.
	if f := b.String(); len(f) > fieldLimit {
		return f[:fieldLimit] + "…"
	}
	return b.String()
}

// fieldLimit bounds the path an error names, so that an error stays a few
// hundred bytes whatever names a body nests.
const fieldLimit = 200

func plainName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z') {
			return false
		}
	}
	return true
}

// quoteName quotes a member name for an error, cut to 64 bytes.
func quoteName(name []byte) string {
	if len(name) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		return strconv.QuoteToASCII(string(name[:cut])) + "…"
	}
	return strconv.QuoteToASCII(string(name))
}

// excerpt is a number for an error, cut to 32 bytes.
func excerpt(v []byte) string {
	if len(v) > 32 {
		return string(v[:32]) + "…"
	}
	return string(v)
}

// compact returns a copy of src, a valid JSON value, without insignificant
// whitespace: the bytes json.Compact makes of it. Servers usually send
// compact JSON, so it looks for whitespace first and copies src whole
// when there is none.
func compact(src []byte) []byte {
	ws := -1 // the first whitespace outside strings
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case ' ', '\t', '\n', '\r':
			ws = i
		case '"':
			i = stringEnd(src, i) - 1
			continue
		default:
			continue
		}
		break
	}
	if ws < 0 {
		return append([]byte(nil), src...)
	}
	dst := make([]byte, ws, len(src))
	copy(dst, src)
	for i := ws; i < len(src); i++ {
		switch c := src[i]; c {
		case ' ', '\t', '\n', '\r':
		case '"':
			j := stringEnd(src, i)
			dst = append(dst, src[i:j]...)
			i = j - 1
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// stringEnd returns the offset just past the JSON string that starts at
// src[i] (a '"').
func stringEnd(src []byte, i int) int {
	for j := i + 1; ; j++ {
		k := bytes.IndexByte(src[j:], '"')
		if k < 0 {
			return len(src)
		}
		j += k
		// The quote ends the string unless an odd number of backslashes
		// escapes it.
		n := 0
		for b := j - 1; b > i && src[b] == '\\'; b-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
	}
}
