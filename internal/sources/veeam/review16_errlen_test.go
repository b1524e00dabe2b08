package veeam

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Error text quoted from a body is cut to a few hundred bytes (SPEC §1.3;
// TestDecodePageStrict holds the decoder's errors to 512 bytes). A
// duplicate member deep in objects whose names are long and need escaping
// makes pointerField quote every name on the way, 64 bytes of each
// expanded fourfold by QuoteToASCII, and it only stops after passing 512.
func TestReview16DuplicateMemberPathIsCut(t *testing.T) {
	name := strings.Repeat(`\u0001`, 64) // 64 bytes, quoted as \x01 each: 256
	var open, close string
	for range 12 {
		open += `"` + name + `":{`
		close += `}`
	}
	body := strictPage(`{"instanceUid":"a",` + open + `"k":1,"k":2` + close + `}`)
	_, err := decodePage("veeam", 1, []byte(body))
	if err == nil {
		t.Fatal("a member twice was accepted")
	}
	if n := len(err.Error()); n > 512 {
		t.Errorf("error of %d bytes: %.120s…", n, err)
	}
	if !utf8.ValidString(err.Error()) || strings.ContainsRune(err.Error(), '\x01') {
		t.Errorf("error carries raw control characters or invalid UTF-8")
	}
}
