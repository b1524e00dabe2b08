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
	// An entry without a clientUserId is left out and counted, never an
	// error that holds back every other user (SPEC §1.3).
	p, err := decodePage([]byte(`{"versionId":"v","users":[{"status":"Registered"},{"clientUserId":"","status":"Retired"},{"clientUserId":"a","status":"Registered"}]}`))
	if err != nil || p.Skipped != 2 || len(p.Users) != 1 || p.Users[0].ClientUserID != "a" {
		t.Errorf("entries without a clientUserId: %+v, %v; want them skipped and counted", p, err)
	}
	for _, body := range []string{`{"errorNumber":9621,"errorMessage":"expired"}`, `{"errorMessage":"no number","users":[]}`} {
		p, err := decodePage([]byte(body))
		if err != nil || p.ErrorNumber == 0 || len(p.Users) != 0 {
			t.Errorf("%s: %+v, %v; want an error number and no users", body, p, err)
		}
	}
}
