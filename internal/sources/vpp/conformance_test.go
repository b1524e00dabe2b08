package vpp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources/sourcetest"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// conformanceSecret is the token inside the conformance suite's sToken: a
// secret of its own.
const conformanceSecret = "C0NF0RMANCE-inner-T0KEN"

var conformanceSToken = base64.StdEncoding.EncodeToString([]byte(
	`{"token":"` + conformanceSecret + `","expDate":"2099-08-15T18:13:52-0700","orgName":"Conformance Org"}`))

func TestConformance(t *testing.T) {
	sourcetest.RunConformance(t, sourcetest.Harness{Start: startConformance})
}

// startConformance adapts vpptest to the source conformance suite.
func startConformance(t *testing.T, pageSize int) *sourcetest.Fake {
	s := vpptest.NewServer(conformanceSToken)
	s.SetBatchSize(pageSize)
	return &sourcetest.Fake{
		Handler: s,
		NewClient: func(t *testing.T, baseURL string) sourcetest.Source {
			c, err := vpp.New(vpp.Config{
				Name:            "vpp-conformance",
				BaseURL:         baseURL + "/mdm",
				SToken:          conformanceSToken,
				HTTPClient:      &http.Client{Timeout: 10 * time.Second},
				MaxAttempts:     4,
				Backoff:         httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond},
				MaxFullRestarts: -1,
				MaxBodyBytes:    1 << 20,
			})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		SetUsers: func(n int) []string {
			for _, u := range s.Users() {
				s.Remove(u.UserID)
			}
			ids := make([]string, n)
			for i := range n {
				id := int64(1000 + i)
				s.Put(vpptest.User{UserID: id, Email: "u" + strconv.Itoa(i) + "@example.com",
					ClientUserIDStr: "c" + strconv.Itoa(i), Status: vpptest.StatusAssociated})
				ids[i] = strconv.FormatInt(id, 10)
			}
			return ids
		},
		Inject: func(f sourcetest.Fault) string {
			vf := vpptest.Fault{Batch: f.Page, Times: f.Times, HTTPStatus: f.Status, RetryAfter: f.RetryAfter, Truncate: f.Truncate}
			field := ""
			switch {
			case f.Hang:
				vf.Delay = time.Hour
			case f.Refuse:
				vf.ErrorNumber = vpp.ErrInvalidToken
			case f.Echo != "":
				vf.ErrorNumber, vf.ErrorMessage = vpp.ErrInvalidArgument, f.Echo
			case f.BadField:
				vf.Rewrite = func(body []byte) []byte { return badUserID(t, body) }
				field = "users[0].userId"
			case f.BadUTF8:
				vf.Rewrite = func(body []byte) []byte {
					return bytes.Replace(body, []byte(`"email":"`), []byte("\"email\":\"\xff"), 1)
				}
			case f.Oversize:
				vf.Rewrite = func(body []byte) []byte { return append(body, bytes.Repeat([]byte(" "), 2<<20)...) }
			}
			s.InjectFault(vf)
			return field
		},
		Requests: s.Requests,
		Secrets:  []string{conformanceSToken, conformanceSecret},
		Shapes: map[string]func(){
			// Apple's own example sends "0"; the end is the batch with a
			// sinceModifiedToken.
			"TotalBatchCountZero": func() { s.InjectFault(vpptest.Fault{ZeroTotalBatchCount: true}) },
			"NoTotalCount":        func() { s.InjectFault(vpptest.Fault{NoTotalCount: true}) },
			"NeitherCount":        func() { s.InjectFault(vpptest.Fault{ZeroTotalBatchCount: true, NoTotalCount: true}) },
		},
		NotTheEnd: map[string]func(page int){
			// A batch with zero users is not the end (SPEC §1.1).
			"EmptyBatch": func(page int) { s.InjectFault(vpptest.Fault{EmptyBatch: page}) },
			// Neither token: a failed batch, retried, not the end.
			"NoTokens": func(page int) { s.InjectFault(vpptest.Fault{Batch: page, NoTokens: true}) },
		},
		Endless: func() { s.InjectFault(vpptest.Fault{Endless: true}) },
	}
}

// badUserID gives the first user of a getVPPUsersSrv batch a userId of the
// wrong type.
func badUserID(t *testing.T, body []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("badUserID: %v", err)
		return body
	}
	users, _ := m["users"].([]any)
	if len(users) == 0 {
		t.Error("badUserID: the batch has no user to spoil")
		return body
	}
	users[0].(map[string]any)["userId"] = map[string]any{"not": "a number"}
	out, err := json.Marshal(m)
	if err != nil {
		t.Errorf("badUserID: %v", err)
		return body
	}
	return out
}
