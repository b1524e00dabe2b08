package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// Source kinds.
const (
	KindVPP   = "vpp"
	KindVeeam = "veeam"
	// KindVPP2 is Apple's App and Book Management API v2 (SPEC §1.4).
	KindVPP2 = "vpp2"
)

// ValidKind reports whether kind is a source kind rollcall knows.
func ValidKind(kind string) bool {
	return kind == KindVPP || kind == KindVeeam || kind == KindVPP2
}

// AppleKind reports whether kind is one of Apple's user directories (the
// legacy VPP service or its v2 API), whose users move through Registered,
// Associated and Retired: those moves have event types of their own.
func AppleKind(kind string) bool { return kind == KindVPP || kind == KindVPP2 }

// Normalised user statuses. Source values are lower-cased; these are the ones
// rollcall itself reasons about.
const (
	StatusRegistered = "registered"
	StatusAssociated = "associated"
	StatusRetired    = "retired"
	StatusEnabled    = "enabled"
	StatusDisabled   = "disabled"
	// StatusRemoved marks a tombstone: the user vanished from a complete snapshot.
	StatusRemoved = "removed"
)

// User is a directory user normalised across sources.
type User struct {
	Source         string `json:"source"`
	SourceKind     string `json:"sourceKind"`
	ID             string `json:"id"`
	Email          string `json:"email,omitempty"`
	UserName       string `json:"userName,omitempty"`
	FirstName      string `json:"firstName,omitempty"`
	LastName       string `json:"lastName,omitempty"`
	Status         string `json:"status"`
	Role           string `json:"role,omitempty"`
	OrganizationID string `json:"organizationId,omitempty"`
	ClientUserID   string `json:"clientUserId,omitempty"`
	// Raw is the source's own record, as it arrived less the members that
	// hold secrets (ScrubRaw) and cut to MAX_RAW_BYTES (CapRaw).
	Raw json.RawMessage `json:"raw,omitempty"`
	// Entries is rollcall's own memory of an Apple v2 user's entries (nil:
	// not known, and for every other kind). It is never published (no JSON
	// member: the poller stores it beside the user, internal/state): it
	// lets the diff see a retirement and re-creation between two runs
	// (docs/VPP2.md).
	Entries *V2Entries `json:"-"`
}

// V2Entries fingerprints the entries of an Apple v2 key listed with its
// active entry.
type V2Entries struct {
	// Retired counts the key's retired entries; negative: not known (an
	// incremental listing), to be taken from the recorded user.
	Retired int `json:"retired"`
	// Active is a hash of the active entry as Apple sent it, invite code
	// included (a new entry has a new one), never the code itself.
	Active string `json:"active"`
}

// TrackedFields lists, in a fixed order, the fields whose change is an event.
// Raw is not tracked: a new invite URL is not a change anyone acts on.
var TrackedFields = []string{"status", "role", "email", "userName", "firstName", "lastName", "organizationId", "clientUserId"}

// Field returns the value of a tracked field; enum fields are lower-cased so
// that "companyOwner" and "CompanyOwner" compare equal.
func (u User) Field(name string) string {
	switch name {
	case "status":
		return strings.ToLower(u.Status)
	case "role":
		return strings.ToLower(u.Role)
	case "email":
		return u.Email
	case "userName":
		return u.UserName
	case "firstName":
		return u.FirstName
	case "lastName":
		return u.LastName
	case "organizationId":
		return u.OrganizationID
	case "clientUserId":
		return u.ClientUserID
	}
	return ""
}

// CopyField sets the tracked field name of u to its value in from, as the
// source sent it: applying an event's changes field by field.
func (u *User) CopyField(name string, from User) {
	switch name {
	case "status":
		u.Status = from.Status
	case "role":
		u.Role = from.Role
	case "email":
		u.Email = from.Email
	case "userName":
		u.UserName = from.UserName
	case "firstName":
		u.FirstName = from.FirstName
	case "lastName":
		u.LastName = from.LastName
	case "organizationId":
		u.OrganizationID = from.OrganizationID
	case "clientUserId":
		u.ClientUserID = from.ClientUserID
	}
}

// Fingerprint is a stable digest of the tracked fields, as 32 hex digits.
// Two users with the same fingerprint are, for rollcall, the same state.
func (u User) Fingerprint() string { return u.Digest().String() }

// Digest is a fingerprint in binary form: the first 16 bytes of a SHA-256
// over the tracked fields. A poller keeps one per user in memory.
type Digest [16]byte

// String is the fingerprint's usual form, 32 lower-case hex digits.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest reads a fingerprint written by String.
func ParseDigest(s string) (Digest, bool) {
	var d Digest
	if len(s) != 2*len(d) {
		return Digest{}, false
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return Digest{}, false
	}
	return d, true
}

// Digest computes u's fingerprint: each tracked field in TrackedFields
// order, length-prefixed (4 bytes, big endian) so that no two field lists
// collide, enum fields lower-cased.
func (u User) Digest() Digest {
	var stack [512]byte
	b := stack[:0]
	for i, v := range [...]string{u.Status, u.Role, u.Email, u.UserName, u.FirstName, u.LastName, u.OrganizationID, u.ClientUserID} {
		if i < 2 { // status and role compare case-insensitively
			b = appendLower(b, v)
			continue
		}
		b = append(b, byte(len(v)>>24), byte(len(v)>>16), byte(len(v)>>8), byte(len(v)))
		b = append(b, v...)
	}
	if e := u.Entries; e != nil && e.Retired > 0 {
		// Only an Apple v2 user whose key has retired entries: every other
		// user's fingerprint is what it always was.
		b = append(b, 0xff, byte(e.Retired>>24), byte(e.Retired>>16), byte(e.Retired>>8), byte(e.Retired))
		b = append(b, e.Active...)
	}
	sum := sha256.Sum256(b)
	return Digest(sum[:16])
}

// appendLower appends the length-prefixed strings.ToLower(v), without
// allocating for ASCII.
func appendLower(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			v = strings.ToLower(v)
			b = append(b, byte(len(v)>>24), byte(len(v)>>16), byte(len(v)>>8), byte(len(v)))
			return append(b, v...)
		}
	}
	b = append(b, byte(len(v)>>24), byte(len(v)>>16), byte(len(v)>>8), byte(len(v)))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// Change is one field's move from one value to another.
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// Data is the payload of every rollcall event.
type Data struct {
	User     User     `json:"user"`
	Previous *User    `json:"previous"`
	Changes  []Change `json:"changes"`
	Reason   string   `json:"reason,omitempty"`
}

// Diff lists the tracked fields that differ between a and b, in TrackedFields
// order. Enum fields compare case-insensitively; the reported values are as
// the users hold them.
func Diff(a, b User) []Change {
	var out []Change
	for _, f := range TrackedFields {
		if a.Field(f) != b.Field(f) {
			out = append(out, Change{Field: f, From: rawField(a, f), To: rawField(b, f)})
		}
	}
	return out
}

func rawField(u User, f string) string {
	switch f {
	case "status":
		return u.Status
	case "role":
		return u.Role
	}
	return u.Field(f)
}
