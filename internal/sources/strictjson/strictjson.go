// Package strictjson holds the field-by-field JSON decoding that Apple's
// two user APIs (the legacy VPP service and App and Book Management v2)
// share: numbers that may arrive as strings, null as absent, errors that
// name what was wrong without repeating the bytes a server sent (a
// misbehaving server may echo the request, and the request holds the
// sToken), and a check for duplicate object members, which encoding/json
// silently resolves in favour of the last.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/redact"
)

// FlexInt is an integer that Apple sends as a JSON number or as a string
// holding one (legacy totalBatchCount arrives as "0").
type FlexInt int64

// UnmarshalJSON reads a number, a string holding one, or null (0).
func (n *FlexInt) UnmarshalJSON(b []byte) error {
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
		return fmt.Errorf("want a number, got %s", Kind(b))
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
	*n = FlexInt(v)
	return nil
}

// Kind names the JSON type of b for an error message.
func Kind(b []byte) string {
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

// IsNull reports whether raw is absent or null: Apple omits null fields.
func IsNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// Int decodes an integer (see FlexInt) into dst; absent or null leaves dst.
func Int(raw json.RawMessage, dst *int64) error {
	if IsNull(raw) {
		return nil
	}
	var n FlexInt
	if err := n.UnmarshalJSON(raw); err != nil {
		return err
	}
	*dst = int64(n)
	return nil
}

// String decodes a string into dst; absent or null leaves dst.
func String(raw json.RawMessage, dst *string) error {
	if IsNull(raw) {
		return nil
	}
	raw = bytes.TrimSpace(raw)
	if raw[0] != '"' {
		return fmt.Errorf("want a string, got %s", Kind(raw))
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errors.New("malformed string")
	}
	return nil
}

// DescribeError keeps the position of a syntax error but not the offending
// bytes, which could be anything the server sent back.
func DescribeError(err error) error {
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

// Object decodes a JSON object into its members, refusing a member named
// twice: encoding/json would keep the last silently, so that two readers
// of the same bytes (rollcall, and whoever reads the raw record it keeps)
// could disagree about a user's status. It reads raw in one pass. The
// error names the member but not its value.
func Object(raw []byte) (map[string]json.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	t, err := d.Token()
	if err != nil {
		return nil, describe(err, raw)
	}
	if t != json.Delim('{') {
		return nil, fmt.Errorf("want an object, got %s", Kind(bytes.TrimSpace(raw)))
	}
	m := map[string]json.RawMessage{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, describe(err, raw)
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, describe(err, raw)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("member %q appears twice", cut(name))
		}
		m[name] = v
	}
	if _, err := d.Token(); err != nil { // }
		return nil, describe(err, raw)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("malformed JSON at byte %d: data after the object", d.InputOffset())
	}
	return m, nil
}

// describe is DescribeError for a json.Decoder, which reports input cut
// short as io.ErrUnexpectedEOF (or io.EOF) instead of a syntax error.
func describe(err error, raw []byte) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("truncated JSON at byte %d", len(raw))
	}
	return DescribeError(err)
}

// cut shortens a member name for an error message and strips control
// characters: it is the server's text.
func cut(s string) string { return redact.Excerpt(s, 64) }

// FieldError names the field of a body that could not be decoded; a
// client turns it into a sources.DecodeError with source and page.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return "field " + e.Field + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// InvalidUTF8 names the member of top (a body with invalid UTF-8) that
// holds it: the list member (e.g. "users") as list[i] when its i-th of n
// records, raw(i), is the culprit.
func InvalidUTF8(top map[string]json.RawMessage, list string, n int, raw func(i int) []byte) *FieldError {
	for name, b := range top {
		if utf8.Valid(b) {
			continue
		}
		if name == list {
			for i := range n {
				if !utf8.Valid(raw(i)) {
					name = fmt.Sprintf("%s[%d]", list, i)
					break
				}
			}
		}
		return &FieldError{Field: name, Err: errors.New("invalid UTF-8")}
	}
	return &FieldError{Err: errors.New("invalid UTF-8")}
}
