package vpp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
)

// answer is a status -1 body with errorMessage msg.
func answer(t *testing.T, number int, msg string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"status": -1, "errorNumber": number, "errorMessage": msg})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestErrorMessageIsCut: a 5 MB errorMessage of terminal escapes and line
// breaks becomes a few hundred bytes of printable text, in the error and in
// the log line of every retry.
func TestErrorMessageIsCut(t *testing.T) {
	huge := strings.Repeat("\x1b[31mInvalid argument.\x1b[0m\r\n", 5<<20/30)
	cases := []struct {
		name     string
		number   int
		requests int
	}{
		{"9602 fails at once", vpp.ErrInvalidArgument, 1},
		{"9646 retried until attempts run out", vpp.ErrTooManyRequests, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, base := newScript(t, answer(t, tc.number, huge))
			h := newClient(t, base, func(c *vpp.Config) { c.MaxAttempts = 3 })
			_, err := h.client.Snapshot(context.Background(), sources.Request{})
			var ae *vpp.APIError
			if !errors.As(err, &ae) || ae.Number != tc.number || s.count() != tc.requests {
				t.Fatalf("err = %.200v after %d requests, want APIError %d after %d", err, s.count(), tc.number, tc.requests)
			}
			msg := err.Error()
			if len(ae.Message) > vpp.MessageLimit || len(msg) > 400 {
				t.Errorf("message of %d bytes, error of %d: %.500q", len(ae.Message), len(msg), msg)
			}
			if i := strings.IndexFunc(msg, unicode.IsControl); i >= 0 || strings.Contains(msg, "[31m") || !strings.Contains(msg, "Invalid argument.") {
				t.Errorf("error %q should keep the text without control characters", msg)
			}
			if logs := h.logs.String(); len(logs) > 4<<10 || strings.Contains(logs, "[31m") {
				t.Errorf("%d bytes of logs: %.1000s", len(logs), logs)
			}
		})
	}
}

// TestEscapedSTokenIsRedacted: a server that echoes the sToken with its "/"
// and "+" (and "=") escaped, or the token inside it, does not get it into
// an error.
func TestEscapedSTokenIsRedacted(t *testing.T) {
	inner := "S3CRET-t0ken-VALUE"
	token := base64.StdEncoding.EncodeToString([]byte(`{"token":"` + inner + `","expDate":"2026-08-15T18:13:52-0700","orgName":"Org ~~~~?"}`))
	if !strings.Contains(token, "/") || !strings.Contains(token, "+") || !strings.HasSuffix(token, "=") {
		t.Fatalf("test sToken %s lacks a / or a + or padding", token)
	}
	cases := []struct {
		name, echoed string
	}{
		{"as given", token},
		{"query-escaped", url.QueryEscape(token)},
		{"path-escaped", url.PathEscape(token)},
		{"lower-case hex", strings.NewReplacer("%2B", "%2b", "%2F", "%2f", "%3D", "%3d").Replace(url.QueryEscape(token))},
		{"/ and + escaped, padding not", strings.NewReplacer("/", "%2F", "+", "%2B").Replace(token)},
		{"json-escaped slashes", strings.ReplaceAll(token, "/", `\/`)},
		{"the token inside", inner},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, base := newScript(t, answer(t, vpp.ErrInvalidToken, "invalid sToken "+tc.echoed+" given"))
			h := newClient(t, base, func(c *vpp.Config) { c.SToken = token })
			_, err := h.client.Snapshot(context.Background(), sources.Request{})
			var ae *vpp.APIError
			if !errors.As(err, &ae) || !ae.StopsSource() {
				t.Fatalf("err = %v, want a token error", err)
			}
			msg := err.Error()
			if strings.Contains(msg, tc.echoed) || strings.Contains(msg, "S3CRET") || strings.Contains(msg, token[:20]) || !strings.Contains(msg, "invalid sToken [sToken]") {
				t.Errorf("error %q, want the sToken redacted", msg)
			}
		})
	}
}
