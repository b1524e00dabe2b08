package events

import (
	"errors"
	"fmt"
	"strings"
)

// EncodeKey turns a source's user id into a token that is both a valid NATS
// subject token (no '.', '*', '>' or whitespace) and a valid KV key.
//
// The encoding is reversible and documented: ASCII letters, digits and '-'
// pass unchanged; every other byte, including '_' itself, becomes '_' followed
// by two upper-case hex digits. So "1" stays "1", a UUID stays as it is and
// "a.b@c" becomes "a_2Eb_40c". The empty id encodes to "_" (which DecodeKey
// maps back to "").
func EncodeKey(id string) string {
	if id == "" {
		return "_"
	}
	if plainKey(id) {
		return id
	}
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(id) * 2)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if keyByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&0xF])
	}
	return b.String()
}

// ErrBadKey is returned by DecodeKey for a token EncodeKey cannot have made.
var ErrBadKey = errors.New("events: malformed user key")

// DecodeKey reverses EncodeKey.
func DecodeKey(key string) (string, error) {
	if key == "_" {
		return "", nil
	}
	if key == "" {
		return "", ErrBadKey
	}
	if plainKey(key) {
		return key, nil
	}
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case keyByte(c):
			b.WriteByte(c)
		case c == '_' && i+2 < len(key) && isUpperHex(key[i+1]) && isUpperHex(key[i+2]):
			b.WriteByte(unhex(key[i+1])<<4 | unhex(key[i+2]))
			i += 2
		default:
			return "", fmt.Errorf("%w: %q at byte %d", ErrBadKey, key, i)
		}
	}
	out := b.String()
	if EncodeKey(out) != key {
		// Reject non-canonical spellings (e.g. an escaped letter) so that one
		// user has exactly one key.
		return "", fmt.Errorf("%w: %q is not canonical", ErrBadKey, key)
	}
	return out, nil
}

func plainKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if !keyByte(s[i]) {
			return false
		}
	}
	return true
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// ValidSourceName reports whether name can name a source: it becomes a
// subject token and a KV key prefix, so lower-case letters, digits, '-' and
// '_' only, starting with a letter.
func ValidSourceName(name string) bool {
	if name == "" || len(name) > 64 || !(name[0] >= 'a' && name[0] <= 'z') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Subject is the stream subject of an event: rollcall.events.<source>.<userkey>.<type>.
func Subject(source, userID, typ string) string {
	return SubjectPrefix + source + "." + EncodeKey(userID) + "." + typ
}

// SubjectPrefix starts every event subject.
const SubjectPrefix = "rollcall.events."

// StateKey is the rollcall_users KV key of a user: <source>.<userkey>.
func StateKey(source, userID string) string {
	return source + "." + EncodeKey(userID)
}
