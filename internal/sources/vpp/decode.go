package vpp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources/strictjson"
)

// flexInt is an integer that Apple sends as a JSON number or as a string
// holding one (totalBatchCount arrives as "0").
type flexInt = strictjson.FlexInt

func jsonKind(b []byte) string { return strictjson.Kind(b) }

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

// fieldError names the field of a body that could not be decoded.
type fieldError = strictjson.FieldError

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

// invalidUTF8 names the field of a body with invalid UTF-8.
func invalidUTF8(top map[string]json.RawMessage, users []user) *fieldError {
	return strictjson.InvalidUTF8(top, "users", len(users), func(i int) []byte { return users[i].Raw })
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

func isNull(raw json.RawMessage) bool { return strictjson.IsNull(raw) }

func decodeInt(raw json.RawMessage, dst *int64) error { return strictjson.Int(raw, dst) }

func decodeString(raw json.RawMessage, dst *string) error { return strictjson.String(raw, dst) }

// describeJSONError keeps the position of a syntax error but not the
// offending bytes, which could be anything the server sent back.
func describeJSONError(err error) error { return strictjson.DescribeError(err) }
