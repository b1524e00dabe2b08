package vpp2

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources"
)

// FuzzDecodePage checks what decodePage accepts: a page or an error,
// never both; every entry with its key and status, its raw record valid
// UTF-8 JSON whose own status agrees; and the merge of any accepted page
// leaves at most one user per key.
func FuzzDecodePage(f *testing.F) {
	for _, s := range []string{
		`{"currentPageIndex":0,"nextPageIndex":1,"size":2,"totalPages":2,"tokenExpirationDate":"2030-11-08T22:33:22+0000","uId":"2049025000431439","versionId":"021f10a0-7035-11eb-9f67-bd1df52e1e13","users":[{"clientUserId":"client-101","email":"client-101@apple.com","inviteCode":"46bc93ea3acd41e0a4919c02db0d7d3a","status":"Registered"},{"clientUserId":"client-103","email":"client-1031@apple.com","status":"Retired"}]}`,
		`{"currentPageIndex":0,"size":1,"totalPages":1,"uId":"2049025000431439","versionId":"87051b80-85f6-11eb-a3ab-95f98468c5f3","users":[{"clientUserId":"client-101","email":"client-101@apple.com","idHash":"C2Wwd8LcIaE2v6f2/mvu82Gs/Lc=","status":"Associated"}]}`,
		`{"errorNumber":9646,"errorMessage":"There are too many recent requests. Try again momentarily."}`,
		`{"errorNumber":"9621","users":[]}`,
		`{"currentPageIndex":"0","versionId":"v","users":[{"clientUserId":"a","status":"Retired"},{"clientUserId":"a","status":"Deleted"},{"clientUserId":"a","status":"Registered"}]}`,
		`{"versionId":"v","users":[{"clientUserId":"a","status":"Retired","status":"Registered"}]}`,
		`{"versionId":"v","users":null}`,
		`{"versionId":"v"}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePage(body)
		if err != nil {
			return
		}
		if p.ErrorNumber != 0 {
			if len(p.Users) != 0 {
				t.Fatalf("error %d decoded with %d users", p.ErrorNumber, len(p.Users))
			}
			return
		}
		for i, e := range p.Users {
			if e.ClientUserID == "" || e.Status == "" {
				t.Fatalf("entry %d accepted without key or status", i)
			}
			if !utf8.Valid(e.Raw) || !json.Valid(e.Raw) {
				t.Fatalf("entry %d raw is not valid UTF-8 JSON: %q", i, e.Raw)
			}
			var m map[string]any
			if err := json.Unmarshal(e.Raw, &m); err != nil || m["status"] != e.Status {
				t.Fatalf("entry %d: raw status %v, decoded %q", i, m["status"], e.Status)
			}
		}
		c := &Client{name: "fuzz"}
		var out sources.Collector
		if err := newMerger(c, true).page(p.Users, 1, &out); err != nil {
			if !strings.Contains(err.Error(), "second active entry") {
				t.Fatalf("merge: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, u := range out.Users {
			if seen[u.ID] {
				t.Fatalf("key %q delivered twice", u.ID)
			}
			seen[u.ID] = true
			var m map[string]json.RawMessage
			if json.Unmarshal(u.Raw, &m) == nil && m["inviteCode"] != nil {
				t.Fatalf("raw keeps the invite code: %s", u.Raw)
			}
		}
	})
}
