package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is the clock skew Verify allows when given none; it is
// the Standard Webhooks recommendation and bounds how long a captured
// request can be replayed.
const DefaultTolerance = 5 * time.Minute

// Verification failures, for receivers that want to tell them apart.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp outside tolerance")
	ErrNoMatch        = errors.New("webhook: no signature matches")
)

const secretPrefix = "whsec_"

// decodeSecret returns the HMAC key of a whsec_<base64> secret. The error
// never quotes the secret.
func decodeSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(secret), secretPrefix)
	if !ok {
		return nil, errSecretForm
	}
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		// Generated secrets are padded, but a hand-made one may not be.
		if k, err = base64.RawStdEncoding.DecodeString(b64); err != nil {
			return nil, errSecretForm
		}
	}
	if len(k) == 0 {
		return nil, errors.New("key is empty")
	}
	return k, nil
}

// CheckSecret reports whether secret is a usable whsec_<base64> signing
// secret; the error never quotes it.
func CheckSecret(secret string) error {
	_, err := decodeSecret(secret)
	return err
}

func signature(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Sign returns the Standard Webhooks signature "v1,<base64 HMAC-SHA256>" of
// id + "." + unix seconds of ts + "." + body under secret (whsec_<base64>).
// Several signatures go into one webhook-signature header separated by
// spaces.
func Sign(secret string, id string, ts time.Time, body []byte) (string, error) {
	k, err := decodeSecret(secret)
	if err != nil {
		return "", fmt.Errorf("webhook: sign: %w", err)
	}
	return signature(k, id, ts.Unix(), body), nil
}

// Verify checks a received request the way a rollcall webhook receiver
// should: the timestamp is within tolerance of now (DefaultTolerance when
// tolerance is not positive), and at least one v1 signature in the header
// matches body under at least one of secrets. Comparison is constant-time.
func Verify(secrets []string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: not unix seconds", ErrTimestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		k, err := decodeSecret(s)
		if err != nil {
			return fmt.Errorf("webhook: verify: secret %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		want := []byte(signature(k, id, ts, body))
		for _, got := range strings.Fields(sigs) {
			if hmac.Equal([]byte(got), want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}
