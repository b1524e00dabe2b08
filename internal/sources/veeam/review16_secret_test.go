package veeam_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
)

// review16Token is a static API key that is a plain word (letters, digits,
// '-', '_'), as many API keys are.
const review16Token = "tok_S3CRET_static_4f9a"

// A server that echoes the bearer token back in a body (a misbehaving
// proxy, a hostile server) must not get it into rollcall's errors, which
// are logged and shown on /readyz (SPEC §1.3: no secret appears in logs,
// errors or events). APIErrors are scrubbed of the client's secrets; the
// streaming decoder's errors now quote member names and ids, and are not.
func TestReview16DecodeErrorsNeverCarryTheToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		lookup bool
	}{
		{name: "the token as a member name given twice in a user",
			body: `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[{"instanceUid":"a","` + review16Token + `":1,"` + review16Token + `":2}]}`},
		{name: "the token as a member name given twice in meta",
			body: `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0},"` + review16Token + `":1,"` + review16Token + `":1},"data":[]}`},
		{name: "the token as a duplicate name differing by an escape",
			body: `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[{"instanceUid":"a","x":{"` + review16Token + `":1,"` + strings.Replace(review16Token, "S", `\u0053`, 1) + `":2}}]}`},
		{name: "a lookup answered with the token as the user's id", lookup: true,
			body: `{"data":{"instanceUid":"` + review16Token + `"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tc.body)
			}))
			defer ts.Close()
			c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: ts.URL, Token: review16Token, Backoff: tinyBackoff, MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tc.lookup {
				_, err = c.LookupUser(context.Background(), "u-1")
			} else {
				_, err = c.Snapshot(context.Background(), sources.Request{Full: true})
			}
			if err == nil {
				t.Fatal("the body was accepted")
			}
			if strings.Contains(err.Error(), review16Token) || strings.Contains(err.Error(), review16Token[:12]) {
				t.Errorf("the error carries the bearer token: %v", err)
			}
		})
	}
}
