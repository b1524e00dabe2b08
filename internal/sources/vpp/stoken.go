package vpp

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/redact"
)

// TokenInfo is what an sToken says about itself.
type TokenInfo struct {
	OrgName string
	ExpDate time.Time
}

// expDateLayouts are the spellings of expDate seen in sTokens; Apple's own
// has no colon in the zone offset, which time.RFC3339 rejects.
var expDateLayouts = []string{
	"2006-01-02T15:04:05-0700",
	"2006-01-02T15:04:05.000-0700",
	time.RFC3339,
	time.RFC3339Nano,
}

// DecodeSToken reads the organisation and expiry out of an sToken (base64
// of {"token","expDate","orgName"}). Errors never contain the token or any
// part of it.
func DecodeSToken(s string) (TokenInfo, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return TokenInfo{}, errors.New("vpp: decode sToken: empty")
	}
	var raw []byte
	var err error
	// Tokens copied from a browser or a file sometimes lose their padding or
	// arrive in the URL alphabet; all four spellings name the same bytes.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return TokenInfo{}, errors.New("vpp: decode sToken: not base64")
	}
	var t struct {
		Token   *string `json:"token"`
		ExpDate string  `json:"expDate"`
		OrgName string  `json:"orgName"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		// json's message can quote decoded bytes, which are the secret.
		return TokenInfo{}, errors.New("vpp: decode sToken: not a JSON object with token, expDate and orgName")
	}
	if t.Token == nil || *t.Token == "" {
		return TokenInfo{}, errors.New("vpp: decode sToken: no token field")
	}
	info := TokenInfo{OrgName: t.OrgName}
	exp := strings.TrimSpace(t.ExpDate)
	if exp == "" {
		return info, errors.New("vpp: decode sToken: no expDate field")
	}
	for _, layout := range expDateLayouts {
		if ts, err := time.Parse(layout, exp); err == nil {
			info.ExpDate = ts
			return info, nil
		}
	}
	// expDate is not secret; showing it helps whoever has to fix it.
	// It is cut and cleaned: the sToken file is not ours.
	return info, fmt.Errorf("vpp: decode sToken: expDate %q is not a date", redact.Excerpt(exp, 64))
}
