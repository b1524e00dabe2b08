package vpp

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// stricterOnly reports whether err is one of the failures the streaming
// decoder adds to encoding/json's: a member name twice, a \u escape of a
// lone surrogate (and, in a lookup, invalid UTF-8 at all: the old lookup
// decoder never checked it).
func stricterOnly(err error) bool {
	return strings.Contains(err.Error(), "second member") || errors.Is(err, errInvalidUTF8)
}

// batchOf wraps users in a status-0 batch.
func batchOf(users string) string {
	return `{"status":0,"sinceModifiedToken":"s","users":[` + users + `]}`
}

// TestDecodeResponseStrict: each check of the batch decoder, with the
// field it names. Cases marked stricter were accepted by the encoding/json
// decoder (v1DecodeResponse) and are refused now, so that each is a
// decision and not an accident.
func TestDecodeResponseStrict(t *testing.T) {
	for _, tc := range []struct {
		name, body, field, err string // err "" = decodes
		stricter               bool
	}{
		{name: "a member twice in a user", body: batchOf(`{"userId":1,"status":"Registered","status":"Retired"}`),
			field: "users[0].status", err: "second member", stricter: true},
		{name: "userId twice by an escape", body: batchOf(`{"userId":1,"user\u0049d":2,"status":"Registered"}`),
			field: "users[0].userId", err: "second member", stricter: true},
		{name: "status twice at the top", body: `{"status":0,"status":-1,"sinceModifiedToken":"s"}`,
			field: "status", err: "second member", stricter: true},
		{name: "a member twice where rollcall does not read", body: batchOf(`{"userId":1,"status":"Registered","licenses":[{"a":1,"a":2}]}`),
			field: "users[0].licenses[0].…", err: "second member", stricter: true},
		{name: "names differing in case are two members", body: batchOf(`{"userId":1,"status":"Registered","Status":"Retired"}`)},
		{name: "an unknown member twice is not named", body: batchOf(`{"userId":1,"status":"Registered","x":{"TOKEN":1,"TOKEN":2}}`),
			field: "users[0].…", err: "second member", stricter: true},
		{name: "invalid UTF-8 in an unknown member is not named", body: "{\"status\":0,\"TOKEN\":\"\xff\",\"sinceModifiedToken\":\"s\"}",
			field: "…", err: "invalid UTF-8"},
		{name: "a lone surrogate in an email", body: batchOf(`{"userId":1,"status":"Registered","email":"a\ud800@x"}`),
			field: "users[0]", err: "lone surrogate", stricter: true},
		{name: "a lone surrogate at the top", body: `{"status":0,"sinceModifiedToken":"s\udc00","users":[]}`,
			field: "sinceModifiedToken", err: "invalid UTF-8", stricter: true},
		{name: "invalid UTF-8 in a second user", body: batchOf("{\"userId\":1,\"status\":\"Registered\"},{\"userId\":2,\"status\":\"Registered\",\"x\":\"\xff\"}"),
			field: "users[1]", err: "invalid UTF-8"},
		{name: "invalid UTF-8 in a failure is mangled", body: "{\"status\":-1,\"errorNumber\":9603,\"errorMessage\":\"x\xff\"}"},
		{name: "a lone surrogate in a failure is mangled", body: `{"status":-1,"errorNumber":9603,"errorMessage":"x\ud800"}`},
		{name: "a bad user in a failure is not read", body: `{"users":[{"userId":1.5},{"userId":1.5}],"status":-1,"errorNumber":9646}`},
		{name: "duplicate userId", body: batchOf(`{"userId":1,"status":"Registered"},{"userId":"1","status":"Retired"}`),
			field: "users[1].userId", err: "duplicate userId 1 (also users[0])"},
		{name: "userId a fraction", body: batchOf(`{"userId":1.5,"status":"Registered"}`), field: "users[0].userId", err: "fraction"},
		{name: "userId past int64", body: batchOf(`{"userId":9223372036854775808,"status":"Registered"}`), field: "users[0].userId", err: "64 bits"},
		{name: "userId exact past float64", body: batchOf(`{"userId":9007199254740993.0,"status":"Registered"}`)},
		{name: "userId null", body: batchOf(`{"userId":null,"status":"Registered"}`), field: "users[0].userId", err: "missing"},
		{name: "status empty", body: batchOf(`{"userId":1,"status":""}`), field: "users[0].status", err: "missing"},
		{name: "email a number", body: batchOf(`{"userId":1,"status":"Registered","email":3}`), field: "users[0].email", err: "want a string, got a number"},
		{name: "a user null", body: batchOf(`null`), field: "users[0]", err: "want an object"},
		{name: "users an object", body: `{"status":0,"sinceModifiedToken":"s","users":{}}`, field: "users", err: "want an array"},
		{name: "totalBatchCount an object", body: `{"status":0,"totalBatchCount":{},"sinceModifiedToken":"s"}`, field: "totalBatchCount", err: "want a number"},
		{name: "status missing", body: `{"sinceModifiedToken":"s"}`, field: "status", err: "missing"},
		{name: "body null", body: `null`, err: "response is null"},
		{name: "body an array", body: `[]`, err: "want an object"},
		{name: "data after the object", body: `{"status":0} {}`, err: "data after the object"},
		{name: "truncated", body: `{"status":0,"users":[`, err: "truncated JSON"},
		{name: "malformed", body: `{"status":0,"users":[}`, err: "malformed JSON at byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeResponse([]byte(tc.body))
			_, oldErr := v1DecodeResponse([]byte(tc.body))
			if tc.err == "" {
				if err != nil || oldErr != nil {
					t.Fatalf("err = %v (encoding/json: %v), want none", err, oldErr)
				}
				return
			}
			var fe *fieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Err.Error(), tc.err) {
				t.Fatalf("err = %#v (%v), want field %q and %q", err, err, tc.field, tc.err)
			}
			if tc.stricter != (oldErr == nil) {
				t.Errorf("encoding/json: %v; stricter = %v", oldErr, tc.stricter)
			}
		})
	}
}

// TestDecodeResponseRawIsExact: a user's record is its bytes as sent,
// whitespace and escapes included, as encoding/json kept them.
func TestDecodeResponseRawIsExact(t *testing.T) {
	body, err := os.ReadFile("testdata/vpp-getVPPUsersSrv-response.json")
	if err != nil {
		t.Fatal(err)
	}
	spaced := batchOf("\n  {\"userId\" : 7 ,\t\"status\":\"Registered\", \"inviteCode\":\"c\", \"x\":\"\\u00e9\\/\"}  ,{\"userId\":8,\"status\":\"Retired\"}\n")
	for _, b := range [][]byte{body, []byte(spaced)} {
		r, err := decodeResponse(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		old, err := v1DecodeResponse(b)
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if len(r.Users) == 0 || !reflect.DeepEqual(r, old) {
			t.Fatalf("decoded\n%+v\nencoding/json\n%+v", r, old)
		}
		for _, u := range r.Users {
			if !strings.Contains(string(b), string(u.Raw)) || u.Raw[0] != '{' || u.Raw[len(u.Raw)-1] != '}' {
				t.Errorf("raw %q is not the user's bytes", u.Raw)
			}
		}
	}
}

// vppSeeds are bodies for both fuzz tests: the fixture, Apple's lookup
// example and hostile ones.
func vppSeeds(f *testing.F) [][]byte {
	fixture, err := os.ReadFile("testdata/vpp-getVPPUsersSrv-response.json")
	if err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{fixture, []byte(appleGetUserAnswer)}
	for _, s := range []string{
		`{"status":-1,"errorNumber":"9603","errorMessage":"Internal error"}`,
		`{"status":"0","batchToken":"b","totalBatchCount":"3","users":[{"userId":"1","status":"Retired"}]}`,
		`{"status":0,"sinceModifiedToken":"s","users":[]}`,
		`{"status":0,"users":[{"userId":1e3,"status":"Registered"},{"userId":1,"status":"x"}]}`,
		`{"status":0,"users":null}`,
		`null`,
		`{"status":0,"user":{"userId":" 7 ","status":"Associated","email":"a\u00e9\ud83d\ude00"}}`,
		`{"status":0,"user":{"userId":1,"status":"Registered","status":"Retired"}}`,
		`{"users":[{"userId":1.5}],"status":-1,"errorNumber":9646,"errorMessage":"x\ud800"}`,
		"{\"status\":-1,\"errorNumber\":9601,\"errorMessage\":\"\xc3\x28\xed\xa0\x80\"}",
		"{ \"status\" : 0 ,\n \"batchToken\" : \"b\\/\" , \"users\" : [ { \"userId\" : 2 , \"status\" : \"Registered\" , \"x\" : [ 1 , { } ] } ] }",
		batchOf(`{"userId":9007199254740993.0,"status":"Registered"},{"userId":"9007199254740992","status":"Retired"}`),
		batchOf(`{"userId":1,"status":"Registered","user\u0049d":2}`),
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

const appleGetUserAnswer = `{"clientContext":"{\"guid\":\"b92\"}","status":0,"uId":"100978",
"user":{"clientUserIdStr":"200006","email":"user1@test.com","inviteCode":"201d8c3d520e4b34bec3ed49f20b5b8a",
"itsIdHash":"C2Wwd8LcIaE2v6f2/mvu82Gs/Lc=","licenses":[{"licenseId":2,"adamId":408709785,"isIrrevocable":false}],
"status":"Associated","userId":1}}`

// FuzzDecodeMatchesV1: the streaming batch decoder and the encoding/json
// one it replaced agree. What the new one accepts the old one accepted,
// with the same answer, users and raw byte for byte; what the old one
// accepted the new one accepts too, unless it has a member twice or a \u
// escape that is not a character. Every failure is a *fieldError.
func FuzzDecodeMatchesV1(f *testing.F) {
	for _, s := range vppSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeResponse(body)
		old, oldErr := v1DecodeResponse(body)
		switch {
		case err == nil && oldErr != nil:
			t.Fatalf("accepted what encoding/json refused (%v)", oldErr)
		case err != nil && oldErr == nil && !stricterOnly(err):
			t.Fatalf("refused what encoding/json accepted: %v", err)
		case err == nil && !reflect.DeepEqual(r, old):
			t.Fatalf("decoded\n%+v\nencoding/json\n%+v", r, old)
		}
		var fe *fieldError
		if err != nil && (!errors.As(err, &fe) || len(err.Error()) > 512) {
			t.Fatalf("error %v is not a bounded *fieldError", err)
		}
	})
}

// FuzzLookupMatchesV1 is FuzzDecodeMatchesV1 for getVPPUserSrv answers.
func FuzzLookupMatchesV1(f *testing.F) {
	for _, s := range vppSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := decodeLookup(body)
		old, oldErr := v1DecodeLookup(body)
		switch {
		case err == nil && oldErr != nil:
			t.Fatalf("accepted what encoding/json refused (%v)", oldErr)
		case err != nil && oldErr == nil && !stricterOnly(err):
			t.Fatalf("refused what encoding/json accepted: %v", err)
		case err == nil && !reflect.DeepEqual(a, old):
			t.Fatalf("decoded\n%+v\nencoding/json\n%+v", a, old)
		}
	})
}
