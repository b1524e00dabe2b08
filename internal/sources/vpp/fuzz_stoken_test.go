package vpp_test

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/redact"
	"github.com/rollcall/rollcall/internal/sources/vpp"
)

// FuzzDecodeSToken: whatever is configured as an sToken, decoding it never
// panics; a success read a JSON object with a non-empty token and a date,
// and reports its organisation; a failure is one of the fixed messages,
// quoting at most the expDate (not secret) cleaned and cut to 64 bytes, so
// that no error repeats the token or the configured text, nor floods a log.
func FuzzDecodeSToken(f *testing.F) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		enc(`{"token":"VGhpcyBpcyBhIHNhbXBsZSB0ZXh0","expDate":"2026-08-15T18:13:52-0700","orgName":"Example Inc."}`),
		strings.TrimRight(enc(`{"token":"t0k3n-S3CRET","expDate":"2026-08-15T18:13:52.000-0700","orgName":"x"}`), "="),
		base64.RawURLEncoding.EncodeToString([]byte(`{"token":"t0k3n-S3CRET??>>","expDate":"2026-08-15T18:13:52Z","orgName":"ü"}`)),
		enc(`{"token":"t0k3n-S3CRET","expDate":" soon\n"}`),
		enc(`{"token":"t0k3n-S3CRET","expDate":"` + strings.Repeat("9", 5000) + `\u001b[2J"}`),
		enc(`{"token":"","expDate":"2026-08-15T18:13:52Z"}`),
		enc(`{"token":null}`), enc(`["t0k3n-S3CRET"]`), enc(`"t0k3n-S3CRET"`), enc(`{"token":"t0k3n-S3CRET"`),
		"t0k3n-S3CRET", "  ", "",
	} {
		f.Add(s)
	}
	fixed := map[string]bool{}
	for _, m := range []string{"empty", "not base64", "not a JSON object with token, expDate and orgName", "no token field", "no expDate field"} {
		fixed["vpp: decode sToken: "+m] = true
	}
	f.Fuzz(func(t *testing.T, s string) {
		info, err := vpp.DecodeSToken(s)
		var tok struct {
			Token   *string `json:"token"`
			ExpDate string  `json:"expDate"`
			OrgName string  `json:"orgName"`
		}
		decoded, isBase64 := decodeAny(strings.TrimSpace(s))
		isObject := isBase64 && json.Unmarshal(decoded, &tok) == nil
		if err == nil {
			if !isObject || tok.Token == nil || *tok.Token == "" {
				t.Fatalf("DecodeSToken(%q) accepted a token without a token field", s)
			}
			if info.ExpDate.IsZero() || info.OrgName != tok.OrgName {
				t.Fatalf("DecodeSToken(%q) = %+v, want the expiry and organisation %q", s, info, tok.OrgName)
			}
			return
		}
		msg := err.Error()
		if fixed[msg] {
			return
		}
		exp := strings.TrimSpace(tok.ExpDate)
		if !isObject || exp == "" || msg != "vpp: decode sToken: expDate "+strconv.Quote(redact.Excerpt(exp, 64))+" is not a date" {
			t.Fatalf("DecodeSToken(%q): error %q quotes more than the expDate", s, msg)
		}
	})
}

// decodeAny decodes s in the first base64 spelling that takes it.
func decodeAny(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}
