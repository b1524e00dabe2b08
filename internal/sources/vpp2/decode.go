package vpp2

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources/strictjson"
)

// page is one decoded GetUsersResponse, or an ErrorResponse when
// ErrorNumber is set: Apple may send either with any HTTP status, 200
// included, so every body is read for errorNumber first.
type page struct {
	ErrorNumber  int64
	ErrorMessage string

	CurrentPageIndex int64 // -1 when absent
	NextPageIndex    int64
	HasNext          bool // nextPageIndex was sent: only then is there another page
	TotalPages       int64
	Size             int64
	VersionID        string
	Users            []entry
	// Skipped counts the entries left out of Users for want of a
	// clientUserId: nothing keys them.
	Skipped int
}

// entry is one ResponseUser, with the bytes it arrived as. v2 has no
// Apple user id: one clientUserId may have several entries (SPEC §1.4).
type entry struct {
	ClientUserID string
	Email        string
	IDHash       string
	Status       string
	// InviteCode tells one Registered entry from another (never stored or
	// published: events.ScrubRaw drops it from the record kept).
	InviteCode string
	Raw        json.RawMessage
}

// fieldError names the field of a body that could not be decoded.
type fieldError = strictjson.FieldError

// decodePage decodes a Get Users body field by field, so that a failure
// names the field. Unknown fields are ignored, null counts as absent, a
// member named twice in one object is an error, and so is invalid UTF-8:
// the raw bytes kept for each user are what rollcall stores and
// republishes, and encoding/json would silently replace invalid sequences
// elsewhere.
func decodePage(body []byte) (*page, error) {
	top, err := strictjson.Object(body)
	if err != nil {
		return nil, &fieldError{Err: err}
	}
	p := &page{}
	if err := readError(top, &p.ErrorNumber, &p.ErrorMessage); err != nil {
		return nil, err
	}
	if p.ErrorNumber != 0 {
		// An error carries no users worth reading, and is never an empty
		// directory.
		return p, nil
	}
	p.CurrentPageIndex = -1
	ints := []struct {
		name string
		dst  *int64
	}{
		{"currentPageIndex", &p.CurrentPageIndex},
		{"nextPageIndex", &p.NextPageIndex},
		{"totalPages", &p.TotalPages},
		{"size", &p.Size},
	}
	for _, f := range ints {
		if err := strictjson.Int(top[f.name], f.dst); err != nil {
			return nil, &fieldError{Field: f.name, Err: err}
		}
	}
	p.HasNext = !strictjson.IsNull(top["nextPageIndex"])
	if err := strictjson.String(top["versionId"], &p.VersionID); err != nil {
		return nil, &fieldError{Field: "versionId", Err: err}
	}
	if _, ok := top["users"]; !ok {
		// Apple's answers always carry the array, empty or not; a body
		// without it is not a Get Users answer (a proxy's page, an error
		// in a shape we do not know) and must not pass for an empty page.
		return nil, &fieldError{Field: "users", Err: errors.New("missing")}
	}
	if raw := top["users"]; !strictjson.IsNull(raw) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, &fieldError{Field: "users", Err: strictjson.DescribeError(err)}
		}
		p.Users = make([]entry, 0, len(list))
		for i, raw := range list {
			e, err := decodeEntry(raw)
			if err != nil {
				err.Field = fmt.Sprintf("users[%d]", i) + err.Field
				return nil, err
			}
			if e.ClientUserID == "" {
				p.Skipped++
				continue
			}
			p.Users = append(p.Users, e)
		}
	}
	if !utf8.Valid(body) {
		return nil, invalidUTF8(top, p.Users)
	}
	return p, nil
}

// readError reads errorNumber and errorMessage, which any body may carry.
func readError(top map[string]json.RawMessage, number *int64, message *string) error {
	if err := strictjson.Int(top["errorNumber"], number); err != nil {
		return &fieldError{Field: "errorNumber", Err: err}
	}
	if err := strictjson.String(top["errorMessage"], message); err != nil {
		return &fieldError{Field: "errorMessage", Err: err}
	}
	if *number == 0 && *message != "" {
		// A message without a number is an error nonetheless: it must
		// never pass for a page.
		*number = -1
	}
	return nil
}

// decodeEntry decodes one ResponseUser.
func decodeEntry(raw json.RawMessage) (entry, *fieldError) {
	m, err := strictjson.Object(raw)
	if err != nil {
		return entry{}, &fieldError{Err: err}
	}
	e := entry{Raw: raw}
	strs := []struct {
		name string
		dst  *string
	}{
		{"clientUserId", &e.ClientUserID},
		{"email", &e.Email},
		{"idHash", &e.IDHash},
		{"status", &e.Status},
	}
	for _, f := range strs {
		if err := strictjson.String(m[f.name], f.dst); err != nil {
			return entry{}, &fieldError{Field: "." + f.name, Err: err}
		}
	}
	// The invite code is read leniently: a value that is not a string only
	// leaves it out of the entry's identity (Client.user).
	_ = strictjson.String(m["inviteCode"], &e.InviteCode)
	switch {
	case e.ClientUserID == "":
		// The key: an entry without one (or with an empty one) cannot be
		// told from any other. decodePage leaves it out and counts it.
		return entry{}, nil
	case e.Status == "":
		// Status is the one field every change is judged by.
		return entry{}, &fieldError{Field: ".status", Err: errors.New("missing")}
	}
	return e, nil
}

// invalidUTF8 names the field of a body with invalid UTF-8.
func invalidUTF8(top map[string]json.RawMessage, users []entry) *fieldError {
	return strictjson.InvalidUTF8(top, "users", len(users), func(i int) []byte { return users[i].Raw })
}

// serviceConfig is what rollcall takes from GET /mdm/v2/service/config.
type serviceConfig struct {
	UsersURL string
	// MaxRequestPerSecond is limits.maxRequestPerSecond; 0 when absent.
	MaxRequestPerSecond int64
}

// decodeServiceConfig reads a service config body: urls.getUsers and
// limits.maxRequestPerSecond. Apple's answer holds many more URLs, which
// rollcall does not use.
func decodeServiceConfig(body []byte) (serviceConfig, int64, error) {
	top, err := strictjson.Object(body)
	if err != nil {
		return serviceConfig{}, 0, &fieldError{Err: err}
	}
	var number int64
	var message string
	if err := readError(top, &number, &message); err != nil {
		return serviceConfig{}, 0, err
	}
	if number != 0 {
		return serviceConfig{}, number, nil
	}
	var sc serviceConfig
	if !strictjson.IsNull(top["urls"]) {
		urls, err := strictjson.Object(top["urls"])
		if err != nil {
			return serviceConfig{}, 0, &fieldError{Field: "urls", Err: err}
		}
		if err := strictjson.String(urls["getUsers"], &sc.UsersURL); err != nil {
			return serviceConfig{}, 0, &fieldError{Field: "urls.getUsers", Err: err}
		}
	}
	if !strictjson.IsNull(top["limits"]) {
		limits, err := strictjson.Object(top["limits"])
		if err != nil {
			return serviceConfig{}, 0, &fieldError{Field: "limits", Err: err}
		}
		if err := strictjson.Int(limits["maxRequestPerSecond"], &sc.MaxRequestPerSecond); err != nil {
			return serviceConfig{}, 0, &fieldError{Field: "limits.maxRequestPerSecond", Err: err}
		}
	}
	return sc, 0, nil
}
