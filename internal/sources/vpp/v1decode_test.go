package vpp

// The encoding/json decoder that the streaming one (decode.go) replaced,
// kept as it was (names prefixed v1) as the oracle FuzzDecodeMatchesV1
// and FuzzLookupMatchesV1 compare the new decoder with: what both accept
// must decode to the same answer, users and raw byte for byte, and the new
// one may accept nothing the old one refused. It reads integers with
// strictjson.Int, which is exact now (issue 16 review): the oracle is of
// the structure, not of float64 rounding.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources/strictjson"
)

func v1JSONKind(b []byte) string { return strictjson.Kind(b) }

// v1DecodeResponse decodes a getVPPUsersSrv body field by field, so that a
// failure names the field. Unknown fields are ignored; null fields count as
// absent, as Apple omits them.
func v1DecodeResponse(body []byte) (*response, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, &fieldError{Err: v1DescribeJSONError(err)}
	}
	if top == nil {
		return nil, &fieldError{Err: errors.New("response is null, want an object")}
	}
	r := &response{}
	status, ok := top["status"]
	if !ok || v1IsNull(status) {
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
		if err := v1DecodeInt(top[f.name], f.dst); err != nil {
			return nil, &fieldError{Field: f.name, Err: err}
		}
	}
	r.HasTotalCount = !v1IsNull(top["totalCount"])
	strs := []struct {
		name string
		dst  *string
	}{
		{"errorMessage", &r.ErrorMessage},
		{"batchToken", &r.BatchToken},
		{"sinceModifiedToken", &r.SinceModifiedToken},
	}
	for _, f := range strs {
		if err := v1DecodeString(top[f.name], f.dst); err != nil {
			return nil, &fieldError{Field: f.name, Err: err}
		}
	}
	if r.Status != 0 {
		// A failure carries no users worth reading.
		return r, nil
	}
	if raw := top["users"]; !v1IsNull(raw) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, &fieldError{Field: "users", Err: v1DescribeJSONError(err)}
		}
		r.Users = make([]user, 0, len(list))
		seen := make(map[int64]int, len(list))
		for i, raw := range list {
			u, err := v1DecodeUser(raw)
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
		return nil, v1InvalidUTF8(top, r.Users)
	}
	return r, nil
}

// invalidUTF8 names the field of a body with invalid UTF-8.
func v1InvalidUTF8(top map[string]json.RawMessage, users []user) *fieldError {
	return strictjson.InvalidUTF8(top, "users", len(users), func(i int) []byte { return users[i].Raw })
}

// v1DecodeLookup decodes a getVPPUserSrv body like v1DecodeResponse does a
// listing: field by field, unknown fields ignored, null as absent.
func v1DecodeLookup(body []byte) (*lookupAnswer, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, &fieldError{Err: v1DescribeJSONError(err)}
	}
	if top == nil {
		return nil, &fieldError{Err: errors.New("response is null, want an object")}
	}
	if v1IsNull(top["status"]) {
		return nil, &fieldError{Field: "status", Err: errors.New("missing")}
	}
	a := &lookupAnswer{}
	if err := v1DecodeInt(top["status"], &a.Status); err != nil {
		return nil, &fieldError{Field: "status", Err: err}
	}
	if err := v1DecodeInt(top["errorNumber"], &a.ErrorNumber); err != nil {
		return nil, &fieldError{Field: "errorNumber", Err: err}
	}
	if err := v1DecodeString(top["errorMessage"], &a.ErrorMessage); err != nil {
		return nil, &fieldError{Field: "errorMessage", Err: err}
	}
	if a.Status != 0 || v1IsNull(top["user"]) {
		return a, nil
	}
	u, fe := v1DecodeUser(top["user"])
	if fe != nil {
		fe.Field = "user" + fe.Field
		return nil, fe
	}
	a.User = &u
	return a, nil
}

func v1DecodeUser(raw json.RawMessage) (user, *fieldError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return user{}, &fieldError{Err: fmt.Errorf("want an object, got %s", v1JSONKind(bytes.TrimSpace(raw)))}
	}
	u := user{Raw: raw}
	id, ok := m["userId"]
	if !ok || v1IsNull(id) {
		return user{}, &fieldError{Field: ".userId", Err: errors.New("missing")}
	}
	if err := v1DecodeInt(id, &u.UserID); err != nil {
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
		if err := v1DecodeString(m[f.name], f.dst); err != nil {
			return user{}, &fieldError{Field: "." + f.name, Err: err}
		}
	}
	if u.Status == "" {
		// Status is the one field every change is judged by.
		return user{}, &fieldError{Field: ".status", Err: errors.New("missing")}
	}
	return u, nil
}

func v1IsNull(raw json.RawMessage) bool { return strictjson.IsNull(raw) }

func v1DecodeInt(raw json.RawMessage, dst *int64) error { return strictjson.Int(raw, dst) }

func v1DecodeString(raw json.RawMessage, dst *string) error { return strictjson.String(raw, dst) }

// describeJSONError keeps the position of a syntax error but not the
// offending bytes, which could be anything the server sent back.
func v1DescribeJSONError(err error) error { return strictjson.DescribeError(err) }
