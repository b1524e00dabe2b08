package vpp2

import (
	"errors"
	"strings"
	"testing"
)

// Bad input is named by its field; an error body is an error, never a page.
func TestDecodePageFields(t *testing.T) {
	for _, tc := range []struct {
		body, field, msg string
	}{
		{`{"versionId":"v","users":[{"clientUserId":"a","status":"Retired","status":"Registered"}]}`, "users[0]", `member "status" appears twice`},
		{`{"versionId":"v","versionId":"w","users":[]}`, "", `member "versionId" appears twice`},
		{`{"versionId":"v"}`, "users", "missing"},
		{`{"versionId":"v","users":[{"status":"Registered"}]}`, "users[0].clientUserId", "missing"},
		{`{"versionId":"v","users":[{"clientUserId":"a"}]}`, "users[0].status", "missing"},
		{`{"versionId":"v","users":[{"clientUserId":7,"status":"Registered"}]}`, "users[0].clientUserId", "want a string"},
		{`{"versionId":"v","nextPageIndex":"x","users":[]}`, "nextPageIndex", "not an integer"},
		{`{"versionId":1,"users":[]}`, "versionId", "want a string"},
		{"{\"versionId\":\"v\",\"users\":[{\"clientUserId\":\"a\",\"email\":\"\xff\",\"status\":\"Registered\"}]}", "users[0]", "invalid UTF-8"},
		{`{"versionId":"v","users":[`, "", "truncated JSON"},
		{`[]`, "", "want"},
	} {
		_, err := decodePage([]byte(tc.body))
		var fe *fieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want field %q and %q", tc.body, err, tc.field, tc.msg)
		}
	}
	for _, body := range []string{`{"errorNumber":9621,"errorMessage":"expired"}`, `{"errorMessage":"no number","users":[]}`} {
		p, err := decodePage([]byte(body))
		if err != nil || p.ErrorNumber == 0 || len(p.Users) != 0 {
			t.Errorf("%s: %+v, %v; want an error number and no users", body, p, err)
		}
	}
}
