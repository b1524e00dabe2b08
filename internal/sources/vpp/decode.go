package vpp

// Decoding of getVPPUsersSrv (a batch of a listing) and getVPPUserSrv (a
// single-user lookup) answers.
//
// A body is read once, as a stream of tokens (jsontext.Decoder), as the
// Veeam decoder reads its pages: the fields rollcall uses are taken from
// the tokens as they pass, and each user's record (Raw) is the user's own
// bytes as the server sent them, sliced out of the body by offsets and
// copied (not compacted: encoding/json kept them so, and rollcall stores
// and republishes them; inviteCode and inviteUrl are dropped from the
// record later, by events.ScrubRaw, as before). Before, encoding/json
// checked the whole body once (checkValid, about a third of the time)
// and then decoded it again into maps.
//
// jsontext checks the syntax, the UTF-8 and member names; this file checks
// the types, the integers (strictjson.ParseInt: exact, no fractions, no
// overflow), the fields that must be there and that no userId comes twice,
// and names the field of every failure without repeating the server's
// bytes. Decided as the Veeam decoder decided:
//
//   - An object with two members of one name, at any depth, is an error.
//     encoding/json kept the last silently, so that two readers of the
//     same bytes (rollcall, and whoever reads the raw record it keeps)
//     could disagree about a user's id or status.
//   - A \u escape of a lone surrogate is invalid UTF-8, as invalid bytes
//     are; encoding/json replaced it silently by U+FFFD, so that two
//     different emails or ids could read the same.
//
// Member names are matched exactly (after unescaping), as encoding/json's
// map of members matched them.
//
// An answer whose status is not 0 is a failure, whose users encoding/json
// did not read: their errors are not errors then, and invalid UTF-8 in
// such an answer was mangled, not refused (decodeLax keeps that, so that
// an error number is still acted on).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/rollcall/rollcall/internal/sources/strictjson"
)

// response is one decoded getVPPUsersSrv answer.
type response struct {
	Status             int64
	ErrorNumber        int64
	ErrorMessage       string
	BatchToken         string
	SinceModifiedToken string
	BatchCount         int64
	TotalBatchCount    int64
	TotalCount         int64
	HasTotalCount      bool // totalCount was sent: "0" is a count, absence is not
	Users              []user
}

// user is one record of users[], with the bytes it arrived as.
type user struct {
	UserID          int64
	Email           string
	ClientUserIDStr string
	Status          string
	Raw             json.RawMessage
}

// lookupAnswer is one decoded getVPPUserSrv answer.
type lookupAnswer struct {
	Status       int64
	ErrorNumber  int64
	ErrorMessage string
	User         *user // nil when the answer carries none
}

// fieldError names the field of a body that could not be decoded.
type fieldError = strictjson.FieldError

// errInvalidUTF8 is wrapped by every failure about invalid UTF-8, which
// decodeLax retries.
var errInvalidUTF8 = errors.New("invalid UTF-8")

// decodeResponse decodes a getVPPUsersSrv body. Unknown fields are
// ignored; null fields count as absent, as Apple omits them. Every
// failure is a *fieldError.
func decodeResponse(body []byte) (*response, error) {
	return decodeLax(body, (*reader).response)
}

// decodeLookup decodes a getVPPUserSrv body like decodeResponse does a
// listing.
func decodeLookup(body []byte) (*lookupAnswer, error) {
	return decodeLax(body, (*reader).lookup)
}

// failure is an answer that reports a status.
type failure interface{ failed() bool }

func (r *response) failed() bool     { return r.Status != 0 }
func (a *lookupAnswer) failed() bool { return a.Status != 0 }

// decodeLax reads body with read, strictly; if that fails on invalid
// UTF-8, it reads it again allowing it, and takes the answer if it is a
// failure (status not 0): encoding/json read those, mangling the bytes,
// and an error number (9646: wait; 9601: stop the source) should still be
// acted on. A status-0 answer with invalid UTF-8 stays an error.
func decodeLax[T failure](body []byte, read func(*reader) (T, error)) (T, error) {
	r := newReader(body, false)
	v, err := read(r)
	r.release()
	if err == nil || !errors.Is(err, errInvalidUTF8) {
		return v, err
	}
	lr := newReader(body, true)
	lv, lerr := read(lr)
	lr.release()
	if lerr == nil && lv.failed() {
		return lv, nil
	}
	return v, err
}

// reader walks one body.
type reader struct {
	dec  *jsontext.Decoder
	in   bytes.Buffer // the body; jsontext reads a bytes.Buffer in place
	body []byte
	lax  bool // invalid UTF-8 is mangled into U+FFFD, not refused
	// member is the top-level member being read and user the index in
	// users of the user being read (-1 outside one), for errors.
	member string
	user   int
	name   []byte // scratch for member names with escapes
	text   []byte // the strings of the user being read
	ids    map[int64]int
}

var readers = sync.Pool{New: func() any {
	return &reader{dec: jsontext.NewDecoder(bytes.NewReader(nil)), ids: map[int64]int{}}
}}

func newReader(body []byte, lax bool) *reader {
	r := readers.Get().(*reader)
	r.in = *bytes.NewBuffer(body)
	r.dec.Reset(&r.in, jsontext.AllowInvalidUTF8(lax))
	r.body, r.lax, r.member, r.user = body, lax, "", -1
	return r
}

// release returns r to the pool, holding on to no body.
func (r *reader) release() {
	r.in = bytes.Buffer{}
	r.dec.Reset(&r.in)
	r.body = nil
	if cap(r.text)+cap(r.name) > 64<<10 {
		r.text, r.name = nil, nil // a user of megabytes
	}
	if len(r.ids) > 4096 {
		r.ids = map[int64]int{} // clear keeps a map's buckets
	} else {
		clear(r.ids)
	}
	readers.Put(r)
}

// response reads a whole getVPPUsersSrv body.
func (r *reader) response() (*response, error) {
	resp := &response{}
	var (
		hasStatus bool
		usersErr  *fieldError // an error only if the status is 0
	)
	err := r.root(func(name []byte) error {
		var fe *fieldError
		var err error
		switch string(name) {
		case "status":
			hasStatus, fe, err = r.integer("status", &resp.Status)
		case "errorNumber":
			_, fe, err = r.integer("errorNumber", &resp.ErrorNumber)
		case "batchCount":
			_, fe, err = r.integer("batchCount", &resp.BatchCount)
		case "totalBatchCount":
			_, fe, err = r.integer("totalBatchCount", &resp.TotalBatchCount)
		case "totalCount":
			resp.HasTotalCount, fe, err = r.integer("totalCount", &resp.TotalCount)
		case "errorMessage":
			fe, err = r.topString("errorMessage", &resp.ErrorMessage)
		case "batchToken":
			fe, err = r.topString("batchToken", &resp.BatchToken)
		case "sinceModifiedToken":
			fe, err = r.topString("sinceModifiedToken", &resp.SinceModifiedToken)
		case "users":
			resp.Users, usersErr, err = r.users()
		default:
			err = r.dec.SkipValue()
		}
		if fe != nil {
			return fe
		}
		return err
	})
	switch {
	case err != nil:
		return nil, r.explain(err)
	case !hasStatus:
		return nil, &fieldError{Field: "status", Err: errors.New("missing")}
	case resp.Status != 0:
		// A failure carries no users worth reading.
		resp.Users = nil
		return resp, nil
	case usersErr != nil:
		return nil, usersErr
	}
	return resp, nil
}

// lookup reads a whole getVPPUserSrv body.
func (r *reader) lookup() (*lookupAnswer, error) {
	a := &lookupAnswer{}
	var (
		hasStatus bool
		u         user
		userErr   *fieldError // an error only if the status is 0
	)
	err := r.root(func(name []byte) error {
		var fe *fieldError
		var err error
		switch string(name) {
		case "status":
			hasStatus, fe, err = r.integer("status", &a.Status)
		case "errorNumber":
			_, fe, err = r.integer("errorNumber", &a.ErrorNumber)
		case "errorMessage":
			fe, err = r.topString("errorMessage", &a.ErrorMessage)
		case "user":
			if r.dec.PeekKind() == 'n' {
				_, err = r.dec.ReadToken()
				break
			}
			var present bool
			present, userErr, err = r.readUser(&u)
			if userErr != nil {
				userErr.Field = "user" + userErr.Field
			}
			if present {
				a.User = &u
			}
		default:
			err = r.dec.SkipValue()
		}
		if fe != nil {
			return fe
		}
		return err
	})
	switch {
	case err != nil:
		return nil, r.explain(err)
	case !hasStatus:
		return nil, &fieldError{Field: "status", Err: errors.New("missing")}
	case a.Status != 0:
		a.User = nil
		return a, nil
	case userErr != nil:
		return nil, userErr
	}
	return a, nil
}

// root reads the body's single value: an object, whose members go to
// member with their unescaped names (valid until the next read; member
// must read the value). Anything after it is an error.
func (r *reader) root(member func(name []byte) error) error {
	switch k := r.dec.PeekKind(); k {
	case '{':
	case 'n':
		if _, err := r.dec.ReadToken(); err != nil {
			return err
		}
		if err := r.end(); err != nil {
			return err
		}
		return &fieldError{Err: errors.New("response is null, want an object")}
	default:
		if err := r.skip(k); err != nil {
			return err
		}
		if err := r.end(); err != nil {
			return err
		}
		return &fieldError{Err: fmt.Errorf("want an object, got %s", kindName(k))}
	}
	err := r.members(func(name []byte) error {
		r.member = topName(name)
		if err := member(name); err != nil {
			return err // r.member stays, for explain
		}
		r.member = "" // a name that follows is not this member's
		return nil
	})
	if err != nil {
		return err
	}
	return r.end()
}

// knownNames are the members Apple documents. Errors name only these: any
// other name is the server's text, which could be anything it sent back
// (a misbehaving server may echo the request, and the request holds the
// sToken), and is named "…".
var knownNames = []string{"status", "errorNumber", "errorMessage", "batchToken", "sinceModifiedToken",
	"batchCount", "totalBatchCount", "totalCount", "uId", "location", "locationId", "locationName",
	"clientContext", "expirationMillis", "tokenExpDate", "users", "user",
	"userId", "email", "clientUserIdStr", "itsIdHash", "inviteCode", "inviteUrl", "licenses"}

// topName is name for an error: itself if Apple documents it, else "…".
func topName[T ~string | ~[]byte](name T) string {
	for _, n := range knownNames {
		if string(name) == n {
			return n
		}
	}
	return "…"
}

// end checks that nothing but whitespace follows the value read.
func (r *reader) end() error {
	switch _, err := r.dec.ReadToken(); {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return &fieldError{Err: fmt.Errorf("malformed JSON at byte %d: data after the object", r.dec.InputOffset()-1)}
}

// members reads an object, from its '{' to its '}', handing each member
// to member with its unescaped name.
func (r *reader) members(member func(name []byte) error) error {
	if _, err := r.dec.ReadToken(); err != nil { // '{'
		return err
	}
	return r.rest(member)
}

// rest is members after the '{'.
func (r *reader) rest(member func(name []byte) error) error {
	for {
		if r.dec.PeekKind() == '}' {
			_, err := r.dec.ReadToken()
			return err
		}
		name, err := r.dec.ReadValue()
		if err != nil {
			return err
		}
		unq := name[1 : len(name)-1]
		if r.lax || bytes.IndexByte(unq, '\\') >= 0 {
			// The decoder validated the name; in lax mode invalid UTF-8
			// comes back mangled, with an error to ignore.
			r.name, _ = jsontext.AppendUnquote(r.name[:0], name)
			unq = r.name
		}
		if err := member(unq); err != nil {
			return err
		}
	}
}

// users reads users: an array of user objects, or null. A failure of its
// contents is returned apart (the caller decides whether it counts), the
// rest of the array is then only checked; err is the decoder's.
func (r *reader) users() (users []user, fe *fieldError, err error) {
	switch k := r.dec.PeekKind(); k {
	case '[':
	case 'n':
		_, err := r.dec.ReadToken()
		return nil, nil, err
	default:
		if err := r.skip(k); err != nil {
			return nil, nil, err
		}
		return nil, &fieldError{Field: "users", Err: fmt.Errorf("want an array, got %s", kindName(k))}, nil
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, nil, err
	}
	users = []user{} // [] is no users, not null
	for i := 0; ; i++ {
		if r.dec.PeekKind() == ']' {
			_, err := r.dec.ReadToken()
			r.user = -1
			return users, fe, err
		}
		r.user = i
		if fe != nil {
			if err := r.dec.SkipValue(); err != nil {
				return nil, nil, err
			}
			continue
		}
		var u user
		_, fe, err = r.readUser(&u)
		switch {
		case err != nil:
			return nil, nil, err // r.user stays, for explain
		case fe != nil:
			fe.Field = fmt.Sprintf("users[%d]", i) + fe.Field
			continue
		}
		if j, dup := r.ids[u.UserID]; dup {
			fe = &fieldError{Field: fmt.Sprintf("users[%d].userId", i), Err: fmt.Errorf("duplicate userId %d (also users[%d])", u.UserID, j)}
			continue
		}
		r.ids[u.UserID] = i
		if users == nil || cap(users) == 0 {
			users = make([]user, 0, 64) // a batch is up to a few hundred
		}
		users = append(users, u)
	}
}

// Status values Apple documents, so that a user's status costs no
// allocation of its own.
var statuses = []string{"Registered", "Associated", "Retired", "Deleted"}

// readUser reads one user object into u (present true when it was one).
// fe is a failure of its contents (a field below the user, ".userId");
// the value has been read all the same. err is the decoder's.
func (r *reader) readUser(u *user) (present bool, fe *fieldError, err error) {
	if k := r.dec.PeekKind(); k != '{' {
		if err := r.skip(k); err != nil {
			return false, nil, err
		}
		return false, &fieldError{Err: fmt.Errorf("want an object, got %s", kindName(k))}, nil
	}
	if _, err := r.dec.ReadToken(); err != nil { // '{'
		return false, nil, err
	}
	start := int(r.dec.InputOffset()) - 1
	var (
		hasID                 bool
		email, client, status span
	)
	r.text = r.text[:0]
	err = r.rest(func(name []byte) error {
		if fe != nil {
			return r.dec.SkipValue() // only the syntax is left to check
		}
		var err error
		switch string(name) {
		case "userId":
			hasID, fe, err = r.integer(".userId", &u.UserID)
		case "email":
			fe, err = r.str(".email", &email)
		case "clientUserIdStr":
			fe, err = r.str(".clientUserIdStr", &client)
		case "status":
			fe, err = r.str(".status", &status)
		default:
			err = r.dec.SkipValue()
		}
		return err
	})
	if err != nil {
		return false, nil, err
	}
	end := int(r.dec.InputOffset())
	switch {
	case fe != nil:
		return false, fe, nil
	case !hasID:
		return false, &fieldError{Field: ".userId", Err: errors.New("missing")}, nil
	case status.from == status.to:
		// Status is the one field every change is judged by.
		return false, &fieldError{Field: ".status", Err: errors.New("missing")}, nil
	}
	text := string(r.text)
	u.Email, u.ClientUserIDStr, u.Status = email.of(text), client.of(text), status.of(text)
	for _, s := range statuses {
		if u.Status == s {
			u.Status = s // the constant: text is then kept only by the others
		}
	}
	u.Raw = append(json.RawMessage(nil), r.body[start:end]...)
	return true, nil, nil
}

// span is where a string is in r.text.
type span struct{ from, to int }

func (s span) of(text string) string { return text[s.from:s.to] }

// integer reads an integer field (strictjson.ParseInt: a number, or a
// string holding one; exact, no fraction, within int64) into dst, or null
// (present false, dst left).
func (r *reader) integer(field string, dst *int64) (present bool, fe *fieldError, err error) {
	k := r.dec.PeekKind()
	switch k {
	case 'n':
		_, err := r.dec.ReadToken()
		return false, nil, err
	case '0', '"':
	default:
		if err := r.skip(k); err != nil {
			return false, nil, err
		}
		return false, &fieldError{Field: field, Err: fmt.Errorf("want a number, got %s", kindName(k))}, nil
	}
	v, err := r.dec.ReadValue()
	if err != nil {
		return false, nil, err
	}
	if k == '"' {
		v, _ = jsontext.AppendUnquote(r.name[:0], v) // validated; lax: mangled
		r.name = v
		// Apple sends totalBatchCount as "0"; FlexInt trimmed spaces.
		v = bytes.TrimSpace(v)
	}
	n, perr := strictjson.ParseInt(v)
	if perr != nil {
		return false, &fieldError{Field: field, Err: perr}, nil
	}
	*dst = n
	return true, nil, nil
}

// str reads a string field of the user being read into r.text at sp, or
// null (left empty).
func (r *reader) str(field string, sp *span) (fe *fieldError, err error) {
	switch k := r.dec.PeekKind(); k {
	case 'n':
		_, err := r.dec.ReadToken()
		return nil, err
	case '"':
	default:
		if err := r.skip(k); err != nil {
			return nil, err
		}
		return &fieldError{Field: field, Err: fmt.Errorf("want a string, got %s", kindName(k))}, nil
	}
	v, err := r.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	from := len(r.text)
	if !r.lax && bytes.IndexByte(v, '\\') < 0 {
		r.text = append(r.text, v[1:len(v)-1]...)
	} else {
		r.text, _ = jsontext.AppendUnquote(r.text, v) // validated; lax: mangled
	}
	*sp = span{from, len(r.text)}
	return nil, nil
}

// topString is str for a top-level member, into dst.
func (r *reader) topString(field string, dst *string) (*fieldError, error) {
	r.text = r.text[:0]
	var sp span
	fe, err := r.str(field, &sp)
	if fe == nil && err == nil && sp.to > sp.from {
		*dst = string(r.text[sp.from:sp.to])
	}
	return fe, err
}

// skip reads a value of kind k that is not what was wanted, so that its
// syntax is checked (and an error in it reported first, as encoding/json
// checked the whole body first). A kind of 0 is the decoder's error.
func (r *reader) skip(k jsontext.Kind) error {
	if k == 0 {
		_, err := r.dec.ReadToken()
		if err == nil {
			err = errors.New("unexpected token")
		}
		return err
	}
	return r.dec.SkipValue()
}

// kindName names a JSON kind for an error.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 'n':
		return "null"
	}
	return "an invalid value"
}

// explain turns an error of the decoder into a *fieldError: the position
// of a syntax error but not the offending bytes, which could be anything
// the server sent back (a misbehaving server may echo the request, and
// the request holds the sToken).
func (r *reader) explain(err error) *fieldError {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe
	}
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return &fieldError{Err: fmt.Errorf("truncated JSON at byte %d", len(r.body))}
		}
		return &fieldError{Err: errors.New("malformed JSON")}
	}
	switch {
	case errors.Is(se.Err, jsontext.ErrDuplicateName):
		return &fieldError{Field: pointerField(se.JSONPointer), Err: errors.New("a second member of the same name")}
	case se.Err.Error() == "invalid UTF-8":
		return &fieldError{Field: r.field(), Err: fmt.Errorf("at byte %d: %w", se.ByteOffset, errInvalidUTF8)}
	case strings.Contains(se.Err.Error(), "surrogate"):
		return &fieldError{Field: r.field(), Err: fmt.Errorf("at byte %d, a \\u escape of a lone surrogate: %w", se.ByteOffset, errInvalidUTF8)}
	case errors.Is(se.Err, io.ErrUnexpectedEOF):
		return &fieldError{Err: fmt.Errorf("truncated JSON at byte %d", se.ByteOffset)}
	}
	return &fieldError{Err: fmt.Errorf("malformed JSON at byte %d", se.ByteOffset)}
}

// field names the part of the body being read: users[3], or a top-level
// member.
func (r *reader) field() string {
	if r.member == "users" && r.user >= 0 {
		return fmt.Sprintf("users[%d]", r.user)
	}
	return r.member
}

// pointerField turns a JSON pointer into the field notation of errors:
// /users/3/email is users[3].email. It names only what Apple documents
// (topName); the path ends at the first other name, as "…", so that an
// error holds none of the server's text and stays short.
func pointerField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if tok != "" && len(tok) <= 9 && strings.Trim(tok, "0123456789") == "" && b.Len() > 0 {
			b.WriteString("[" + tok + "]") // an index; a name of digits is at the top
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		n := topName(tok)
		b.WriteString(n)
		if n == "…" {
			break
		}
	}
	return b.String()
}

// The service configuration (discovery.go) is small, read every five
// minutes and decoded with encoding/json through these.

// flexInt is an integer that Apple sends as a JSON number or as a string
// holding one.
type flexInt = strictjson.FlexInt

func decodeString(raw json.RawMessage, dst *string) error { return strictjson.String(raw, dst) }

// describeJSONError keeps the position of a syntax error but not the
// offending bytes, which could be anything the server sent back.
func describeJSONError(err error) error { return strictjson.DescribeError(err) }
