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
	v, err := ParseInt(s)
	if err != nil {
		return err
	}
	*n = FlexInt(v)
	return nil
}

// Errors of ParseInt. They do not repeat the value: a misbehaving server
// could echo the request, and the request holds the sToken.
var (
	errNotInteger = errors.New("not an integer")
	errFraction   = errors.New("not an integer: the number has a fraction")
	errRange      = errors.New("not an integer that fits 64 bits")
)

// maxExp bounds the exponent ParseInt reads: any integral value of an
// int64 has at most 19 digits, so a larger exponent of a non-zero
// mantissa overflows, and reading it whole could overflow the counter.
const maxExp = 1 << 20

// ParseInt reads a decimal number as an exact int64: an optional sign,
// digits with an optional fraction and exponent, as JSON writes numbers
// (plus a leading '+' and leading zeros, which strconv.ParseInt took in
// strings). Some JSON encoders write integral values as 4.0 or 1e3, so
// those are read, exactly: it never rounds through float64, whose 53 bits
// would turn 9007199254740993.0 or a fraction near an integer into a
// neighbouring integer, another user's key. A fraction, a value outside
// int64 and anything else (hex, Inf, NaN, underscores) is an error.
func ParseInt[T ~string | ~[]byte](s T) (int64, error) {
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	// digits are the mantissa's significant digits, without leading zeros;
	// exp is the power of ten they are multiplied by.
	var digits [20]byte
	nd, exp, seen, point := 0, 0, false, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !point:
			point = true
			continue
		case c < '0' || c > '9':
		default:
			seen = true
			switch {
			case c == '0' && nd == 0:
				// A leading zero, or a zero after the point before any
				// significant digit: it counts only as a place.
			case nd < len(digits):
				digits[nd] = c
				nd++
			case c != '0':
				// A 21st significant digit: too large or a fraction.
				if !point {
					return 0, errRange
				}
				return 0, errFraction
			default:
				// A trailing zero beyond 20 digits: a place.
				if !point {
					exp++
				}
				continue
			}
			if point {
				exp--
			}
			continue
		}
		break
	}
	if !seen {
		return 0, errNotInteger
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		e, any := 0, false
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			any = true
			if e < maxExp {
				e = e*10 + int(s[i]-'0')
			}
		}
		if !any {
			return 0, errNotInteger
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return 0, errNotInteger
	}
	return assemble(digits[:nd], exp, neg)
}

// assemble returns the integer of the significant digits times 10^exp.
func assemble(digits []byte, exp int, neg bool) (int64, error) {
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	switch {
	case len(digits) == 0:
		return 0, nil // 0, -0, 0.000e99
	case exp < 0:
		return 0, errFraction
	case len(digits)+exp > 19:
		return 0, errRange
	}
	var u uint64
	for _, c := range digits {
		u = u*10 + uint64(c-'0')
	}
	for range exp {
		u *= 10
	}
	// At most 19 digits: u < 10^19 < 2^64, so no step above wrapped.
	switch {
	case !neg && u <= math.MaxInt64:
		return int64(u), nil
	case neg && u <= -math.MinInt64:
		return -int64(u), nil
	}
	return 0, errRange
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
