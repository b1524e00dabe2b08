package events

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// review19: MayHoldSecret (maySecret, folded by table, searched in one
// pass) must never say false for a text ScrubRaw would change. Names
// spelt every way ScrubRaw reads them: case, the separators it drops,
// escapes, plurals, nested in arrays, at the very end of the text, in a
// text bigger than the pooled buffer.
func TestReview19HoldsMayHoldSecretNoFalseNegative(t *testing.T) {
	fixed := []string{
		`{"P_A-S.S w o r d":1}`,
		`{"\u0070assword":1}`,
		`{"pass\u0077ord":"x"}`,
		`{"a":[{"b":[{"Invite-URL":"u"}]}]}`,
		`{"x-api-key":"k"}`,
		`{"accessTokens":["a"]}`,
		`{"T.O.T.P":1}`,
		`{"pwd":1}`,
		`{"PASS":1}`,
		`{"passs":1}`,
		`{"i n v i t a t i o n L i n k":1}`,
		`{"COOKIES":1}`,
		`{"AUTHORIZATION":1}`,
		`{"recovery_codes":[1]}`,
		`{"o":{"privateKey":"-"}}`,
		`{"a":"` + strings.Repeat("z", 70<<10) + `","token":1}`,
	}
	for _, s := range fixed {
		check(t, []byte(s))
	}
	// Random names over an alphabet of secret fragments, separators and
	// case: every text ScrubRaw changes must be one maySecret flags.
	parts := []string{"pa", "ss", "word", "wd", "p", "w", "d", "to", "ken", "ke", "n", "api", "Key", "o", "t", "invit", "e",
		"ation", "co", "de", "url", "URI", "link", "se", "cret", "cook", "ie", "auth", "orization", "s", "_", "-", ".", " ",
		"PASS", "Tok", "EN", "x", "é", "\t"}
	r := rand.New(rand.NewPCG(19, 19))
	found := 0
	for range 100000 {
		var name strings.Builder
		for range 1 + r.IntN(5) {
			name.WriteString(parts[r.IntN(len(parts))])
		}
		k, _ := json.Marshal(name.String())
		doc := []byte(`{"id":1,` + string(k) + `:{"v":[1]}}`)
		if r.IntN(2) == 0 {
			doc = []byte(`[{"n":` + string(doc) + `}]`)
		}
		if check(t, doc) {
			found++
		}
		if t.Failed() {
			return
		}
	}
	if found == 0 {
		t.Fatal("the random names never made a secret: the test tests nothing")
	}
}

// check reports whether ScrubRaw changes b, and fails t when it does and
// MayHoldSecret says it cannot.
func check(t *testing.T, b []byte) bool {
	t.Helper()
	clean, err := ScrubRaw(b)
	if err != nil {
		t.Fatalf("%.80s: %v", b, err)
	}
	changed := !bytes.Equal(clean, b)
	if changed && !MayHoldSecret(b) {
		t.Errorf("MayHoldSecret false for %.120q, which ScrubRaw scrubs to %.120q", b, clean)
	}
	return changed
}
