package vpp2_test

import (
	"net/url"
	"strings"
	"testing"
)

// review17: Apple's errorMessage is cut to 300 bytes; a token that
// straddles the cut must not leave its first part in the error.
func TestReview17TokenStraddlingTheCut(t *testing.T) {
	s, r := newScriptRig(t, 0)
	inner := "test-inner-token-123"
	for pad := 270; pad <= 300; pad += 3 {
		msg := strings.Repeat("x", pad) + inner + " " + testSToken
		s.set(func(q url.Values) (int, string) { return 400, `{"errorNumber":9602,"errorMessage":"` + msg + `"}` })
		_, err := r.tryRun()
		if err == nil {
			t.Fatal("no error")
		}
		for _, part := range []string{inner[:10], testSToken[:16]} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("pad %d: error carries the start of a secret %q: %q", pad, part, err)
			}
		}
	}
}
