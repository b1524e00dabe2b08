package vpp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// flexInt is an integer that Apple sends as a JSON number or as a string
// holding one (totalBatchCount arrives as "0").
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*n = 0
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return errors.New("malformed string")
		}
		s = strings.TrimSpace(s)
	} else if len(b) == 0 || !(b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		return fmt.Errorf("want a number, got %s", jsonKind(b))
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Some JSON encoders write integral values as 4.0 or 1e3.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			// The value is not repeated: a misbehaving server could echo
			// the request, and the request holds the sToken.
			return errors.New("not an integer")
		}
		v = int64(f)
	}
	*n = flexInt(v)
	return nil
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	}
	return "an invalid value"
}

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

// fieldError names the field of the response that could not be decoded;
// the caller turns it into a sources.DecodeError with source and page.
type fieldError struct {
	Field string
	Err   error
}

func (e *fieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return "field " + e.Field + ": " + e.Err.Error()
}

func (e *fieldError) Unwrap() error { return e.Err }

// decodeResponse decodes a getVPPUsersSrv body field by field, so that a
// failure names the field. Unknown fields are ignored; null fields count as
// absent, as Apple omits them.
func decodeResponse(body []byte) (*response, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, &fieldError{Err: describeJSONError(err)}
	}
	if top == nil {
		return nil, &fieldError{Err: errors.New("response is null, want an object")}
	}
	r := &response{}
	status, ok := top["status"]
	if !ok || isNull(status) {
		return nil, &fieldError{Field: "status", Err: errors.New("missing")}
	}
	ints := []struct {
		name string
		dst  *int64
	}{
		{"status", &r.Status},
		{"errorNumber", &r.ErrorNumber},
		{"batchCount", &r.BatchCount},
		{"totalBatchCount", &r.TotalBatchCount},
		{"totalCount", &r.TotalCount},
	}
	for _, f := range ints {
		if err := decodeInt(top[f.name], f.dst); err != nil {
			return nil, &fieldError{Field: f.name, Err: err}
		}
	}
	r.HasTotalCount = !isNull(top["totalCount"])
	strs := []struct {
		name string
		dst  *string
	}{
		{"errorMessage", &r.ErrorMessage},
		{"batchToken", &r.BatchToken},
		{"sinceModifiedToken", &r.SinceModifiedToken},
	}
	for _, f := range strs {
		if err := decodeString(top[f.name], f.dst); err != nil {
			return nil, &fieldError{Field: f.name, Err: err}
		}
	}
	if r.Status != 0 {
		// A failure carries no users worth reading.
		return r, nil
	}
	if raw := top["users"]; !isNull(raw) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, &fieldError{Field: "users", Err: describeJSONError(err)}
		}
		r.Users = make([]user, 0, len(list))
		seen := make(map[int64]int, len(list))
		for i, raw := range list {
			u, err := decodeUser(raw)
			if err != nil {
				err.Field = fmt.Sprintf("users[%d]", i) + err.Field
				return nil, err
			}
			if j, dup := seen[u.UserID]; dup {
				return nil, &fieldError{Field: fmt.Sprintf("users[%d].userId", i), Err: fmt.Errorf("duplicate userId %d (also users[%d])", u.UserID, j)}
			}
			seen[u.UserID] = i
			r.Users = append(r.Users, u)
		}
	}
	// Checked last so that a more precise field error wins; the raw bytes
	// kept in Raw must be what rollcall stores and republishes, and
	// encoding/json would silently replace invalid sequences elsewhere.
	if !utf8.Valid(body) {
		return nil, invalidUTF8(top, r.Users)
	}
	return r, nil
}

// invalidUTF8 names the field of a response with invalid UTF-8.
func invalidUTF8(top map[string]json.RawMessage, users []user) *fieldError {
	for name, raw := range top {
		if utf8.Valid(raw) {
			continue
		}
		if name == "users" {
			for i, u := range users {
				if !utf8.Valid(u.Raw) {
					name = fmt.Sprintf("users[%d]", i)
					break
				}
			}
		}
		return &fieldError{Field: name, Err: errors.New("invalid UTF-8")}
	}
	return &fieldError{Err: errors.New("invalid UTF-8")}
}

// lookupAnswer is one decoded getVPPUserSrv answer.
type lookupAnswer struct {
	Status       int64
	ErrorNumber  int64
	ErrorMessage string
	User         *user // nil when the answer carries none
}

// decodeLookup decodes a getVPPUserSrv body like decodeResponse does a
// listing: field by field, unknown fields ignored, null as absent.
func decodeLookup(body []byte) (*lookupAnswer, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, &fieldError{Err: describeJSONError(err)}
	}
	if top == nil {
		return nil, &fieldError{Err: errors.New("response is null, want an object")}
	}
	if isNull(top["status"]) {
		return nil, &fieldError{Field: "status", Err: errors.New("missing")}
	}
	a := &lookupAnswer{}
	if err := decodeInt(top["status"], &a.Status); err != nil {
		return nil, &fieldError{Field: "status", Err: err}
	}
	if err := decodeInt(top["errorNumber"], &a.ErrorNumber); err != nil {
		return nil, &fieldError{Field: "errorNumber", Err: err}
	}
	if err := decodeString(top["errorMessage"], &a.ErrorMessage); err != nil {
		return nil, &fieldError{Field: "errorMessage", Err: err}
	}
	if a.Status != 0 || isNull(top["user"]) {
		return a, nil
	}
	u, fe := decodeUser(top["user"])
	if fe != nil {
		fe.Field = "user" + fe.Field
		return nil, fe
	}
	a.User = &u
	return a, nil
}

func decodeUser(raw json.RawMessage) (user, *fieldError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return user{}, &fieldError{Err: fmt.Errorf("want an object, got %s", jsonKind(bytes.TrimSpace(raw)))}
	}
	u := user{Raw: raw}
	id, ok := m["userId"]
	if !ok || isNull(id) {
		return user{}, &fieldError{Field: ".userId", Err: errors.New("missing")}
	}
	if err := decodeInt(id, &u.UserID); err != nil {
		return user{}, &fieldError{Field: ".userId", Err: err}
	}
	strs := []struct {
		name string
		dst  *string
	}{
		{"email", &u.Email},
		{"clientUserIdStr", &u.ClientUserIDStr},
		{"status", &u.Status},
	}
	for _, f := range strs {
		if err := decodeString(m[f.name], f.dst); err != nil {
			return user{}, &fieldError{Field: "." + f.name, Err: err}
		}
	}
	if u.Status == "" {
		// Status is the one field every change is judged by.
		return user{}, &fieldError{Field: ".status", Err: errors.New("missing")}
	}
	return u, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func decodeInt(raw json.RawMessage, dst *int64) error {
	if isNull(raw) {
		return nil
	}
	var n flexInt
	if err := n.UnmarshalJSON(raw); err != nil {
		return err
	}
	*dst = int64(n)
	return nil
}

func decodeString(raw json.RawMessage, dst *string) error {
	if isNull(raw) {
		return nil
	}
	raw = bytes.TrimSpace(raw)
	if raw[0] != '"' {
		return fmt.Errorf("want a string, got %s", jsonKind(raw))
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errors.New("malformed string")
	}
	return nil
}

// describeJSONError keeps the position of a syntax error but not the
// offending bytes, which could be anything the server sent back.
func describeJSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if strings.Contains(se.Error(), "unexpected end") {
			return fmt.Errorf("truncated JSON at byte %d", se.Offset)
		}
		return fmt.Errorf("malformed JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("want %s, got a JSON %s", te.Type, te.Value)
	}
	return errors.New("malformed JSON")
}
