package veeam_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sources/sourcetest"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// conformanceKey is the API key the conformance suite's client holds.
const conformanceKey = "C0NF0RMANCE-veeam-API-KEY"

func TestConformance(t *testing.T) {
	sourcetest.RunConformance(t, sourcetest.Harness{Start: startConformance})
}

// startConformance adapts veeamtest to the source conformance suite. The
// page size is the client's limit: the fake numbers pages by it.
func startConformance(t *testing.T, pageSize int) *sourcetest.Fake {
	s := veeamtest.NewServer(conformanceKey)
	return &sourcetest.Fake{
		Handler: s,
		NewClient: func(t *testing.T, baseURL string) sourcetest.Source {
			c, err := veeam.New(veeam.Config{
				Name:         "veeam-conformance",
				BaseURL:      baseURL,
				Token:        conformanceKey,
				PageSize:     pageSize,
				HTTPClient:   &http.Client{Timeout: 10 * time.Second},
				MaxAttempts:  4,
				Backoff:      httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond},
				MaxBodyBytes: 1 << 20,
			})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		SetUsers: func(n int) []string {
			for _, u := range s.Users() {
				s.Remove(u.InstanceUID)
			}
			ids := make([]string, n)
			for i := range n {
				ids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
				s.Put(veeamtest.User{InstanceUID: ids[i], OrganizationUID: "org", UserName: fmt.Sprintf("user%d", i),
					Status: "Enabled", Role: "CompanyOwner"})
			}
			return ids
		},
		Inject: func(f sourcetest.Fault) string {
			vf := veeamtest.Fault{Page: f.Page, Times: f.Times, Status: f.Status, RetryAfterHeader: f.RetryAfter, Truncate: f.Truncate}
			field := ""
			switch {
			case f.Hang:
				vf.Delay = time.Hour
			case f.Refuse:
				vf.Status = http.StatusUnauthorized
			case f.Echo != "":
				vf.Status, vf.Message = http.StatusBadRequest, f.Echo
			case f.BadField:
				vf.Rewrite = func(body []byte) []byte { return badInstanceUID(t, body) }
				field = "data[0].instanceUid"
			case f.BadUTF8:
				vf.Rewrite = func(body []byte) []byte {
					return bytes.Replace(body, []byte(`"userName":"`), []byte("\"userName\":\"\xff"), 1)
				}
			case f.Oversize:
				vf.Rewrite = func(body []byte) []byte { return append(body, bytes.Repeat([]byte(" "), 2<<20)...) }
			}
			s.InjectFault(vf)
			return field
		},
		Requests: s.Requests,
		Secrets:  []string{conformanceKey},
		Shapes: map[string]func(){
			// A server whose cap is below the client's limit: short pages,
			// the end still found by offset and total.
			"CappedLimit": func() { s.SetMaxLimit(max(1, pageSize-1)) },
		},
		// Veeam has no page that looks like the end without being it: an
		// empty page, or offset+count reaching total, is the end.
	}
}

// badInstanceUID gives the first user of a page an instanceUid of the
// wrong type.
func badInstanceUID(t *testing.T, body []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("badInstanceUID: %v", err)
		return body
	}
	data, _ := m["data"].([]any)
	if len(data) == 0 {
		t.Error("badInstanceUID: the page has no user to spoil")
		return body
	}
	data[0].(map[string]any)["instanceUid"] = 42
	out, err := json.Marshal(m)
	if err != nil {
		t.Errorf("badInstanceUID: %v", err)
		return body
	}
	return out
}
