package veeam

// The encoding/json page decoder that the streaming one (decode.go)
// replaced, kept word for word as the oracle FuzzDecodeMatchesV1 compares
// the new decoder with: what both accept must decode to the same users,
// byte for byte, and the new one may accept nothing the old one refused.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

// v1WireUser is the subset of a Veeam user rollcall reads. Pointers tell a
// missing or null field from an empty one.
type v1WireUser struct {
	InstanceUID     *string `json:"instanceUid"`
	OrganizationUID *string `json:"organizationUid"`
	UserName        *string `json:"userName"`
	Status          *string `json:"status"`
	Role            *string `json:"role"`
	Profile         *struct {
		FirstName *string `json:"firstName"`
		LastName  *string `json:"lastName"`
		Email     *string `json:"email"`
	} `json:"profile"`
}

// v1DecodePage parses and normalises one page of GET /api/v3/users. Every
// failure is a *sources.DecodeError naming the page and, where known, the
// field.
func v1DecodePage(source string, pageNo int, body []byte) (page, error) {
	fail := func(field string, err error) (page, error) {
		return page{}, &sources.DecodeError{Source: source, Page: pageNo, Field: field, Err: err}
	}
	var env struct {
		Meta *struct {
			PagingInfo *struct {
				Total  *int `json:"total"`
				Count  *int `json:"count"`
				Offset *int `json:"offset"`
			} `json:"pagingInfo"`
		} `json:"meta"`
		Data *[]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fail(v1JSONField("", err), v1JSONErr(err))
	}
	switch {
	case env.Meta == nil:
		return fail("meta", errors.New("missing"))
	case env.Meta.PagingInfo == nil:
		return fail("meta.pagingInfo", errors.New("missing"))
	case env.Meta.PagingInfo.Total == nil || *env.Meta.PagingInfo.Total < 0:
		return fail("meta.pagingInfo.total", errors.New("missing or negative"))
	case env.Meta.PagingInfo.Offset == nil || *env.Meta.PagingInfo.Offset < 0:
		return fail("meta.pagingInfo.offset", errors.New("missing or negative"))
	case env.Data == nil:
		return fail("data", errors.New("missing or null"))
	}
	p := page{total: *env.Meta.PagingInfo.Total, offset: *env.Meta.PagingInfo.Offset}
	p.users = make([]events.User, 0, len(*env.Data))
	for i, raw := range *env.Data {
		u, field, err := v1DecodeUser(source, "data["+strconv.Itoa(i)+"]", raw)
		if err != nil {
			return fail(field, err)
		}
		p.users = append(p.users, u)
	}
	if !utf8.Valid(body) {
		return fail("", errors.New("invalid utf-8"))
	}
	return p, nil
}

// v1DecodeUser parses and normalises the user object raw, found at field of
// the body. A failure comes with the field it is about.
func v1DecodeUser(source, field string, raw json.RawMessage) (events.User, string, error) {
	// encoding/json silently replaces invalid UTF-8; an id mangled that way
	// would be a different user.
	if !utf8.Valid(raw) {
		return events.User{}, field, errors.New("invalid utf-8")
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return events.User{}, field, errors.New("not an object")
	}
	var w v1WireUser
	if err := json.Unmarshal(raw, &w); err != nil {
		return events.User{}, v1JSONField(field, err), v1JSONErr(err)
	}
	if w.InstanceUID == nil || *w.InstanceUID == "" {
		return events.User{}, field + ".instanceUid", errors.New("missing or empty")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return events.User{}, field, err
	}
	u := events.User{
		Source:         source,
		SourceKind:     events.KindVeeam,
		ID:             *w.InstanceUID,
		UserName:       v1Deref(w.UserName),
		Status:         strings.ToLower(v1Deref(w.Status)),
		Role:           v1Deref(w.Role),
		OrganizationID: v1Deref(w.OrganizationUID),
		Raw:            json.RawMessage(compact.Bytes()),
	}
	if w.Profile != nil {
		u.Email = v1Deref(w.Profile.Email)
		u.FirstName = v1Deref(w.Profile.FirstName)
		u.LastName = v1Deref(w.Profile.LastName)
	}
	return u, "", nil
}

// v1DecodeLookup checks the body of a 200 to GET /api/v3/users/{id}: Veeam's
// single-resource envelope, {"data":{…}}, holding a well-formed user whose
// instanceUid is id.
func v1DecodeLookup(source, id string, body []byte) error {
	fail := func(field string, err error) error {
		if field == "" {
			return err
		}
		return fmt.Errorf("field %s: %w", field, err)
	}
	var env struct {
		Data *json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fail(v1JSONField("", err), v1JSONErr(err))
	}
	if env.Data == nil {
		return fail("data", errors.New("missing or null"))
	}
	u, field, err := v1DecodeUser(source, "data", *env.Data)
	if err != nil {
		return fail(field, err)
	}
	if !utf8.Valid(body) {
		return errors.New("invalid utf-8")
	}
	if u.ID != id {
		// Not the user asked about (a server that routes the id elsewhere,
		// as it would "me"): it proves nothing about the user's presence.
		return fail("data.instanceUid", fmt.Errorf("the server answered with another user, %s", quoteID(u.ID)))
	}
	return nil
}

func v1Deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// jsonField names the field a json error is about, below prefix.
func v1JSONField(prefix string, err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		if prefix == "" {
			return te.Field
		}
		return prefix + "." + te.Field
	}
	return prefix
}

// jsonErr rewords a json error without the struct names it mentions.
func v1JSONErr(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("got json %s, want %s", te.Value, v1JSONKind(te.Type.Kind().String()))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("malformed json at byte %d: %w", se.Offset, err)
	}
	return err
}

func v1JSONKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "slice":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	case "int", "int64", "float64":
		return "number"
	}
	return k
}
