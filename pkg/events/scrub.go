package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"sync"
)

// ErrRawNotJSON is returned by ScrubRaw for a record that is not valid JSON.
// The error never quotes the record, which may hold the very secrets
// ScrubRaw is there to remove.
var ErrRawNotJSON = errors.New("events: raw is not valid JSON")

// ScrubRaw removes the secrets from a source's raw record before it is
// published or stored (SPEC §1.3): every object member, at any depth (in
// nested objects and in objects inside arrays), whose name IsSecretMember
// reports, together with its value whatever that is. Veeam's
// credentials {userName, password} and VPP's inviteCode and inviteUrl are
// such members.
//
// Everything else is kept byte for byte: members stay in their order, with
// their spacing and escapes; only the removed members and the commas that
// separated them go. A record with nothing to remove is returned as it is
// (the same slice), without allocating. JSON that is not an object (an
// array, a string, a number, true, false, null) passes through, scrubbed of
// the objects an array holds. An empty raw (a user without a record) is
// returned as it is. Anything else that is not valid JSON is
// ErrRawNotJSON.
//
// Scrub before CapRaw: the cap then measures what is actually carried.
func ScrubRaw(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	if !json.Valid(raw) {
		return nil, ErrRawNotJSON
	}
	start := rawSkipSpace(raw, 0)
	dry := scrubber{b: raw}
	dry.value(start)
	if !dry.found {
		return raw, nil
	}
	s := scrubber{b: raw, emit: true, out: make([]byte, 0, len(raw))}
	s.out = append(s.out, raw[:start]...)
	end := s.value(start)
	s.out = append(s.out, raw[end:]...)
	return s.out, nil
}

// IsSecretMember reports whether ScrubRaw removes an object member of this
// name. The name is compared case-insensitively (ASCII) after dropping
// '_', '-', '.' and spaces, so "api_key", "API-Key" and "apiKey" are one
// name, and as it is and without a final "s" (accessTokens, apiKeys). A
// member is removed when its folded name
//
//   - contains "password", "passwd", "passphrase", "passcode", "secret",
//     "credential", "recoverycode" or "backupcode" (password, newPassword,
//     passwordHash, clientSecret, credentials, recoveryCodes, …);
//   - ends in "token", "apikey", "privatekey" or "otp" (token,
//     accessToken, refresh_token, sToken, apiKey, x-api-key, totp, …);
//   - is one of "pwd", "pass", "authorization", "cookie";
//   - or names an invitation's code, URL, URI or link (inviteCode,
//     inviteUrl, invitationLink: VPP's invite code and URL let whoever
//     holds them associate their Apple Account with the invited user, as a
//     bearer token would).
//
// The list errs on the side of removing: a passwordLastChanged member goes
// too. Names that merely resemble these (key, keys, pin, hash, itsIdHash,
// userName, tokenExpDate, tokenCount, invited) are kept.
func IsSecretMember(name string) bool {
	return secretName([]byte(name))
}

// Folded-name rules of IsSecretMember. A name is folded (lower case,
// without _ - . and spaces) and tested as it is and, when it ends in "s",
// without that "s": accessTokens, apiKeys and inviteUrls are plurals of
// secrets, and their whole value goes.
var (
	secretContains = [][]byte{[]byte("password"), []byte("passwd"), []byte("passphrase"), []byte("passcode"), []byte("secret"),
		[]byte("credential"), []byte("recoverycode"), []byte("backupcode")}
	secretSuffixes = [][]byte{[]byte("token"), []byte("apikey"), []byte("privatekey"), []byte("otp")}
	secretNames    = []string{"pwd", "pass", "authorization", "cookie"}
	// An invitation's code, URL or link lets whoever holds it claim the
	// account (VPP's inviteCode and inviteUrl).
	invitePrefixes = [][]byte{[]byte("invite"), []byte("invitation")}
	inviteParts    = [][]byte{[]byte("code"), []byte("url"), []byte("uri"), []byte("link")}
)

// secretName is IsSecretMember on the name's bytes, without allocating for
// names of up to 128 bytes.
func secretName(name []byte) bool {
	var stack [128]byte
	f := stack[:0]
	for _, c := range name {
		switch {
		case c == '_' || c == '-' || c == '.' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		f = append(f, c)
	}
	if secretFolded(f) {
		return true
	}
	return len(f) > 1 && f[len(f)-1] == 's' && secretFolded(f[:len(f)-1])
}

func secretFolded(f []byte) bool {
	for _, s := range secretContains {
		if bytes.Contains(f, s) {
			return true
		}
	}
	for _, s := range secretSuffixes {
		if bytes.HasSuffix(f, s) {
			return true
		}
	}
	for _, s := range secretNames {
		if string(f) == s {
			return true
		}
	}
	for _, p := range invitePrefixes {
		if !bytes.Contains(f, p) {
			continue
		}
		for _, s := range inviteParts {
			if bytes.Contains(f, s) {
				return true
			}
		}
	}
	return false
}

// scrubber walks a valid JSON text. Without emit it only notes whether
// there is a secret member (found); with emit it writes the text without
// them to out.
type scrubber struct {
	b     []byte
	emit  bool
	found bool
	out   []byte
}

func (s *scrubber) write(p []byte) {
	if s.emit {
		s.out = append(s.out, p...)
	}
}

// value copies the value starting at b[i] and returns the index after it.
func (s *scrubber) value(i int) int {
	switch s.b[i] {
	case '{':
		return s.object(i)
	case '[':
		return s.array(i)
	}
	end := rawValueEnd(s.b, i)
	s.write(s.b[i:end])
	return end
}

// object copies the object starting at b[i] without its secret members.
// Each kept member is written with the space before it (after '{' or ','),
// its name, the colon and the space around it, its value and the space
// after it, so that an object without secrets comes out as it went in; a
// removed member goes with the comma before it (after it, for the first),
// as if cut out of the text.
func (s *scrubber) object(i int) int {
	s.write(s.b[i : i+1])
	j, wrote := i+1, false
	for {
		p := j
		j = rawSkipSpace(s.b, j)
		if s.b[j] == '}' { // empty object
			s.write(s.b[p : j+1])
			return j + 1
		}
		keyEnd := rawStringEnd(s.b, j)
		drop := s.secretKey(s.b[j:keyEnd])
		v := rawSkipSpace(s.b, rawSkipSpace(s.b, keyEnd)+1) // past the colon
		var end int
		if drop {
			s.found = true
			end = rawValueEnd(s.b, v)
		} else {
			if wrote {
				s.write([]byte{','})
			}
			s.write(s.b[p:v])
			end = s.value(v)
			wrote = true
		}
		q := rawSkipSpace(s.b, end)
		if !drop || s.b[q] == '}' {
			// The space before '}' stays, whoever's it is.
			s.write(s.b[end:q])
		}
		if s.b[q] == '}' {
			s.write(s.b[q : q+1])
			return q + 1
		}
		j = q + 1 // past the comma
	}
}

// array copies the array starting at b[i], scrubbing the objects in it.
func (s *scrubber) array(i int) int {
	s.write(s.b[i : i+1])
	p := i + 1
	j := rawSkipSpace(s.b, p)
	if s.b[j] == ']' {
		s.write(s.b[p : j+1])
		return j + 1
	}
	for {
		s.write(s.b[p:j])
		end := s.value(j)
		q := rawSkipSpace(s.b, end)
		s.write(s.b[end : q+1]) // the space, then ',' or ']'
		if s.b[q] == ']' {
			return q + 1
		}
		p = q + 1
		j = rawSkipSpace(s.b, p)
	}
}

// secretKey reports whether the quoted member name q is a secret's,
// reading its escapes (a server could spell "password" as
// "pass\u0077ord").
func (s *scrubber) secretKey(q []byte) bool {
	name := q[1 : len(q)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		var un string
		if err := json.Unmarshal(q, &un); err != nil {
			return true // cannot happen in valid JSON; removing is the safe side
		}
		return secretName([]byte(un))
	}
	return secretName(name)
}

func rawSkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// rawStringEnd returns the index after the string starting at b[i].
func rawStringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// rawValueEnd returns the index after the value starting at b[i].
func rawValueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return rawStringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = rawStringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !rawLiteralEnds(b[j]) {
		j++
	}
	return j
}

// rawLiteralEnds reports whether c ends a number, true, false or null.
func rawLiteralEnds(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// secretFragments are folded texts every secret member name contains (see
// secretFolded): "pass" covers password, passwd, passphrase, passcode and
// pass, "invit" every invitation's code, URL or link.
var secretFragments = [][]byte{[]byte("pass"), []byte("secret"), []byte("credential"), []byte("recoverycode"),
	[]byte("backupcode"), []byte("token"), []byte("apikey"), []byte("privatekey"), []byte("otp"), []byte("pwd"),
	[]byte("authorization"), []byte("cookie"), []byte("invit")}

// MayHoldSecret reports whether the JSON text b may hold a member ScrubRaw
// removes: false only when ScrubRaw(b) would return b unchanged, found in
// a single pass, several times faster than ScrubRaw's own (a poller
// checking each of a million stored records at start-up spent seconds on
// ScrubRaw).
func MayHoldSecret(b []byte) bool { return maySecret(b) }

// maySecret reports whether the JSON text b may hold a member ScrubRaw
// removes: false only when no secret name can be in it, so that the
// delivery of an event, whose data holds none, skips ScrubRaw's walk. The
// text is folded as names are (lower case, without _ - . and spaces) and
// searched for what every secret name contains; a member name is a
// contiguous part of the text, so its folded form is one of the folded
// text. A backslash (an escape, which ScrubRaw decodes in names) answers
// true. The folded text goes to a pooled buffer: an array on the stack was
// zeroed at every call and grew the stack of every goroutine that made
// one (the notifier's lanes), which cost more than the search.
func maySecret(b []byte) bool {
	if bytes.IndexByte(b, '\\') >= 0 {
		return true
	}
	bp := foldBufs.Get().(*[]byte)
	f := slices.Grow((*bp)[:0], len(b))[:len(b)]
	n := 0
	for _, c := range b {
		f[n] = foldByte[c]
		if c != '_' && c != '-' && c != '.' && c != ' ' {
			n++
		}
	}
	f = f[:n]
	found := containsFragment(f)
	if cap(f) <= maxPooledFold {
		*bp = f[:0]
		foldBufs.Put(bp)
	}
	return found
}

// foldByte is each byte as maySecret folds it: A-Z to lower case.
var foldByte = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

// fragmentsBy lists secretFragments by their first byte, so that one pass
// over a text finds any of them (a bytes.Contains per fragment read a
// notifier's every event thirteen times).
var fragmentsBy = func() (t [256][][]byte) {
	for _, f := range secretFragments {
		t[f[0]] = append(t[f[0]], f)
	}
	return t
}()

// containsFragment reports whether f contains one of secretFragments.
func containsFragment(f []byte) bool {
	for i, c := range f {
		for _, s := range fragmentsBy[c] {
			if bytes.HasPrefix(f[i:], s) {
				return true
			}
		}
	}
	return false
}

// foldBufs holds maySecret's buffers; one that grew beyond maxPooledFold
// for a large text is left to the collector.
var foldBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const maxPooledFold = 64 << 10
