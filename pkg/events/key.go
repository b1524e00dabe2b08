package events

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxKeyLen is the longest user key token EncodeKey writes out in full. A
// longer encoding is replaced by HashedKeyPrefix and the SHA-256 of the id,
// so that a directory holding a 2,000-byte id still gives a subject the
// server accepts (a subject of several kB makes it close the connection)
// and a KV key of bounded size. The event, the KV record and the webhook
// keep the whole id; only the token is shortened.
const MaxKeyLen = 256

// HashedKeyPrefix starts a token that stands for an over-long id. The
// reversible encoding never writes '_' followed by a letter beyond F, so the
// two forms cannot collide.
const HashedKeyPrefix = "_H"

// EncodeKey turns a source's user id into a token that is both a valid NATS
// subject token (no '.', '*', '>' or whitespace) and a valid KV key.
//
// The encoding is reversible and documented: ASCII letters, digits and '-'
// pass unchanged; every other byte, including '_' itself, becomes '_' followed
// by two upper-case hex digits. So "1" stays "1", a UUID stays as it is and
// "a.b@c" becomes "a_2Eb_40c". The empty id encodes to "_" (which DecodeKey
// maps back to "").
//
// An id whose encoding would be longer than MaxKeyLen bytes encodes to
// HashedKeyPrefix followed by the lower-case hex SHA-256 of the id: stable,
// unique in practice, but not reversible (DecodeKey reports
// ErrHashedKey; the id is in the record or event the key belongs to).
func EncodeKey(id string) string {
	if id == "" {
		return "_"
	}
	if plainKey(id) {
		if len(id) > MaxKeyLen {
			return hashedKey(id)
		}
		return id
	}
	if escapedLen(id) > MaxKeyLen {
		return hashedKey(id)
	}
	return escapeKey(id)
}

// escapeKey is the reversible encoding, whatever its length.
func escapeKey(id string) string {
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

func hashedKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return HashedKeyPrefix + hex.EncodeToString(sum[:])
}

// escapedLen is the length of the reversible encoding of id.
func escapedLen(id string) int {
	n := 0
	for i := 0; i < len(id); i++ {
		if keyByte(id[i]) {
			n++
		} else {
			n += 3
		}
	}
	return n
}

// IsHashedKey reports whether key is the hashed form of an over-long id.
func IsHashedKey(key string) bool {
	return len(key) == len(HashedKeyPrefix)+2*sha256.Size && strings.HasPrefix(key, HashedKeyPrefix) && isLowerHex(key[len(HashedKeyPrefix):])
}

// ErrBadKey is returned by DecodeKey for a token EncodeKey cannot have made.
var ErrBadKey = errors.New("events: malformed user key")

// ErrHashedKey is returned by DecodeKey for the hashed form of an over-long
// id, which cannot be reversed: read the id from the record or event.
var ErrHashedKey = errors.New("events: user key is the hash of an over-long id")

// DecodeKey reverses EncodeKey, and reads the reversible encoding of an id
// of any length (IsLegacyKey). A hashed key gives ErrHashedKey.
func DecodeKey(key string) (string, error) {
	if key == "_" {
		return "", nil
	}
	if key == "" {
		return "", ErrBadKey
	}
	if IsHashedKey(key) {
		return "", ErrHashedKey
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
	if escapeKey(out) != key {
		// Reject non-canonical spellings (e.g. an escaped letter) so that one
		// user has exactly one key.
		return "", fmt.Errorf("%w: %q is not canonical", ErrBadKey, key)
	}
	return out, nil
}

// IsLegacyKey reports whether key is the reversible encoding of an id that
// EncodeKey now hashes: releases before hashing wrote such keys in full.
// DecodeKey still reads them; state written under them must move to the
// hashed key.
func IsLegacyKey(key string) bool {
	id, err := DecodeKey(key)
	return err == nil && EncodeKey(id) != key
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

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

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
