package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// maySecret may answer true for text without a secret, never false for
// text with one: whatever it lets through, ScrubRaw would have left as it
// is.
func TestMaySecretNeverMissesASecret(t *testing.T) {
	names := []string{"password", "Pass_Word", "x-api-key", "API.Key", "accessTokens", "inviteCode", "invitation_URL", "totp", "PWD", "cookie",
		"clientSecret", "recovery-codes", "authorization", "privateKey", "passphrase", "credentials",
		"email", "userName", "role", "status", "key", "pin", "tokenCount", "itsIdHash", "invited", "previous", "changes", "reason", "id"}
	r := rand.New(rand.NewPCG(3, 4))
	var value func(depth int) any
	value = func(depth int) any {
		switch r.IntN(5) {
		case 0:
			if depth < 3 {
				m := map[string]any{}
				for range r.IntN(4) {
					n := names[r.IntN(len(names))]
					if r.IntN(3) == 0 {
						n = strings.ToUpper(n[:1]) + n[1:]
					}
					m[n] = value(depth + 1)
				}
				return m
			}
		case 1:
			if depth < 3 {
				return []any{value(depth + 1), value(depth + 1)}
			}
		case 2:
			return r.IntN(1000)
		}
		return names[r.IntN(len(names))] + fmt.Sprint(r.IntN(9))
	}
	misses := 0
	for range 20000 {
		b, err := json.Marshal(map[string]any{"user": value(0), "previous": value(0)})
		if err != nil {
			t.Fatal(err)
		}
		clean, err := ScrubRaw(b)
		if err != nil {
			t.Fatal(err)
		}
		if !maySecret(b) {
			misses++
			if !bytes.Equal(clean, b) {
				t.Fatalf("maySecret said no secret, ScrubRaw removed one:\n%s\n%s", b, clean)
			}
		}
	}
	if misses == 0 {
		t.Fatal("maySecret never said no: the test shows nothing")
	}
}

// FuzzMaySecret: for any valid JSON, a text maySecret lets through is one
// ScrubRaw leaves as it is.
func FuzzMaySecret(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"pass":"x"}`, `{"p_a_s_s":1}`, `[{"In-Vite.Url":"u"}]`, `{"user":{"raw":{"inviteCode":"c"}}}`, `"token"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) || maySecret(b) {
			return
		}
		clean, err := ScrubRaw(b)
		if err != nil || !bytes.Equal(clean, b) {
			t.Fatalf("maySecret said no secret in %q; ScrubRaw gave %q, %v", b, clean, err)
		}
	})
}

// containsFragment is bytes.Contains over every fragment, in one pass.
func TestContainsFragmentIsContainsAny(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := "pasecrtokinvdwhyulbgm"
	for range 20000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(4) == 0 {
			f := secretFragments[r.IntN(len(secretFragments))]
			at := r.IntN(len(b) + 1)
			b = append(b[:at:at], append(append([]byte{}, f[:r.IntN(len(f))+1]...), b[at:]...)...)
		}
		want := false
		for _, f := range secretFragments {
			want = want || bytes.Contains(b, f)
		}
		if got := containsFragment(b); got != want {
			t.Fatalf("containsFragment(%q) = %v, want %v", b, got, want)
		}
	}
}

func BenchmarkMaySecret(b *testing.B) {
	u := User{Source: "vpp", SourceKind: KindVPP, ID: "12345", Status: "Associated", Email: "teacher.one@school.example",
		Raw: []byte(`{"userId":12345,"email":"teacher.one@school.example","status":"Associated","itsIdHash":"hash12345=","clientUserIdStr":"c-12345"}`)}
	e, err := New(Spec{Type: TypeAssociated, User: u, Previous: &u})
	if err != nil {
		b.Fatal(err)
	}
	body := e.Data()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if maySecret(body) {
			b.Fatal("a secret in an event without one")
		}
	}
}
