package vpp2_test

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
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
)

// conformanceSecret is the token inside the conformance suite's sToken: a
// secret of its own.
const conformanceSecret = "C0NF0RMANCE-v2-inner-T0KEN"

var conformanceSToken = base64.StdEncoding.EncodeToString([]byte(
	`{"token":"` + conformanceSecret + `","expDate":"2099-08-15T18:13:52-0700","orgName":"Conformance Org"}`))

func TestConformance(t *testing.T) {
	sourcetest.RunConformance(t, sourcetest.Harness{Start: startConformance})
}

// startConformance adapts vpp2test to the source conformance suite.
func startConformance(t *testing.T, pageSize int) *sourcetest.Fake {
	s := vpp2test.NewServer(conformanceSToken, nil)
	s.SetPageSize(pageSize)
	dir := s.Directory()
	return &sourcetest.Fake{
		Handler: s,
		NewClient: func(t *testing.T, baseURL string) sourcetest.Source {
			c, err := vpp2.New(vpp2.Config{
				Name:                 "vpp2-conformance",
				BaseURL:              baseURL + "/mdm/v2",
				SToken:               conformanceSToken,
				HTTPClient:           &http.Client{Timeout: 10 * time.Second},
				MaxAttempts:          4,
				Backoff:              httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond},
				MaxRestarts:          -1,
				MaxBodyBytes:         1 << 20,
				MaxRequestsPerSecond: 1000,
			})
			if err != nil {
				t.Fatal(err)
			}
			s.SetMaxRequestPerSecond(1000)
			return c
		},
		SetUsers: func(n int) []string {
			for _, u := range dir.Users() {
				dir.Remove(u.UserID)
			}
			ids := make([]string, n)
			for i := range n {
				ids[i] = "c" + strconv.Itoa(i)
				dir.Put(vpptest.User{UserID: int64(1000 + i), Email: "u" + strconv.Itoa(i) + "@example.com",
					ClientUserIDStr: ids[i], Status: vpptest.StatusAssociated, ItsIDHash: "h" + strconv.Itoa(i)})
			}
			return ids
		},
		Inject: func(f sourcetest.Fault) string {
			vf := vpp2test.Fault{Page: f.Page, Times: f.Times, HTTPStatus: f.Status, RetryAfter: f.RetryAfter, Truncate: f.Truncate}
			field := ""
			switch {
			case f.Hang:
				vf.Delay = time.Hour
			case f.Refuse:
				vf.ErrorNumber = vpp2.ErrTokenRevoked
			case f.Echo != "":
				vf.ErrorNumber, vf.ErrorMessage = vpp2.ErrInvalidArgument, f.Echo
			case f.BadField:
				vf.Rewrite = func(body []byte) []byte { return badEmail(t, body) }
				field = "users[0].email"
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
		NotTheEnd: map[string]func(page int){
			// Zero users on a page is not the end: nextPageIndex is.
			"EmptyPage": func(page int) { s.SetEmptyPage(page) },
		},
		Endless: func() { s.SetEndless(true) },
	}
}

// badEmail gives the first user of a page an e-mail of the wrong type.
func badEmail(t *testing.T, body []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("badEmail: %v", err)
		return body
	}
	users, _ := m["users"].([]any)
	if len(users) == 0 {
		t.Error("badEmail: the page has no user to spoil")
		return body
	}
	users[0].(map[string]any)["email"] = map[string]any{"not": "a string"}
	out, err := json.Marshal(m)
	if err != nil {
		t.Errorf("badEmail: %v", err)
		return body
	}
	return out
}
