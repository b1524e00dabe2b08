package veeam

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
)

// strictPage wraps users in a page envelope.
func strictPage(users string) string {
	return `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[` + users + `]}`
}

// TestDecodePageStrict: each check the page decoder makes, with the field
// it names. Cases marked stricter were accepted by the encoding/json
// decoder (v1DecodePage) and are refused now; the test says so, so that
// each one is a decision and not an accident.
func TestDecodePageStrict(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantField string
		wantErr   string // in the error; "" = the page decodes
		stricter  bool   // the encoding/json decoder accepted it
	}{
		// Duplicates.
		{name: "a member twice in a user", body: strictPage(`{"instanceUid":"a","instanceUid":"b"}`),
			wantField: "data[0].instanceUid", wantErr: "second member", stricter: true},
		{name: "a member twice by case in a user", body: strictPage(`{"instanceUid":"a","InstanceUid":"b"}`),
			wantField: "data[0].instanceUid", wantErr: `second member "InstanceUid"`, stricter: true},
		{name: "a member twice by an escape", body: strictPage(`{"instanceUid":"a","instance\u0055id":"b"}`),
			wantField: "data[0].instanceUid", wantErr: "second member", stricter: true},
		{name: "a profile member twice by case", body: strictPage(`{"instanceUid":"a","profile":{"email":"x","EMAIL":"y"}}`),
			wantField: "data[0].profile.email", wantErr: "second member", stricter: true},
		{name: "a member twice in an object rollcall does not read", body: strictPage(`{"instanceUid":"a","credentials":{"userName":"x","userName":"y"}}`),
			wantField: "data[0].credentials.userName", wantErr: "second member", stricter: true},
		{name: "meta twice", body: `{"meta":{"pagingInfo":{"total":0,"count":0,"offset":0}},"Meta":{"pagingInfo":{"total":5,"count":0,"offset":0}},"data":[]}`,
			wantField: "meta", wantErr: "second member", stricter: true},
		{name: "total twice by case", body: `{"meta":{"pagingInfo":{"total":0,"Total":5,"count":0,"offset":0}},"data":[]}`,
			wantField: "meta.pagingInfo.total", wantErr: "second member", stricter: true},
		{name: "unknown members differing only in case are two members", body: strictPage(`{"instanceUid":"a","title":"x","Title":"y"}`)},
		// Case-insensitive names, as encoding/json matched them.
		{name: "PascalCase names", body: `{"Meta":{"PagingInfo":{"Total":1,"Count":1,"Offset":0}},"Data":[{"InstanceUid":"a","Status":"Enabled","Profile":{"Email":"e"}}]}`},
		// UTF-8.
		{name: "a lone surrogate escape in a user", body: strictPage(`{"instanceUid":"a","userName":"x\ud800y"}`),
			wantField: "data[0]", wantErr: "invalid utf-8", stricter: true},
		{name: "a lone low surrogate escape in an id", body: strictPage(`{"instanceUid":"\udc00"}`),
			wantField: "data[0]", wantErr: "invalid utf-8", stricter: true},
		{name: "a lone surrogate escape in meta", body: `{"meta":{"pagingInfo":{"total":0,"count":0,"offset":0},"x":"\ud800"},"data":[]}`,
			wantField: "", wantErr: "invalid utf-8", stricter: true},
		{name: "invalid utf-8 in a member name", body: strictPage("{\"instanceUid\":\"a\",\"\xff\":1}"),
			wantField: "data[0]", wantErr: "invalid utf-8"},
		{name: "invalid utf-8 in a second user", body: `{"meta":{"pagingInfo":{"total":2,"count":2,"offset":0}},"data":[{"instanceUid":"a"},{"instanceUid":"b","x":"` + "\xc3\x28" + `"}]}`,
			wantField: "data[1]", wantErr: "invalid utf-8"},
		{name: "invalid utf-8 in a string that is not a user", body: strictPage("\"\xff\""),
			wantField: "data[0]", wantErr: "invalid utf-8"},
		{name: "a surrogate pair", body: strictPage(`{"instanceUid":"\ud83d\ude00"}`)},
		// Numbers.
		{name: "total overflows", body: `{"meta":{"pagingInfo":{"total":9223372036854775808,"count":0,"offset":0}},"data":[]}`,
			wantField: "meta.pagingInfo.total", wantErr: "want an integer"},
		{name: "offset a fraction", body: `{"meta":{"pagingInfo":{"total":0,"count":0,"offset":0.5}},"data":[]}`,
			wantField: "meta.pagingInfo.offset", wantErr: "want an integer"},
		{name: "total an exponent", body: `{"meta":{"pagingInfo":{"total":1e2,"count":0,"offset":0}},"data":[]}`,
			wantField: "meta.pagingInfo.total", wantErr: "want an integer"},
		{name: "count overflows", body: `{"meta":{"pagingInfo":{"total":0,"count":-9223372036854775809,"offset":0}},"data":[]}`,
			wantField: "meta.pagingInfo.count", wantErr: "want an integer"},
		{name: "a long number is cut", body: `{"meta":{"pagingInfo":{"total":` + strings.Repeat("9", 5000) + `,"count":0,"offset":0}},"data":[]}`,
			wantField: "meta.pagingInfo.total", wantErr: "…, want"},
		{name: "offset negative", body: `{"meta":{"pagingInfo":{"total":0,"count":0,"offset":-1}},"data":[]}`,
			wantField: "meta.pagingInfo.offset", wantErr: "missing or negative"},
		{name: "total null", body: `{"meta":{"pagingInfo":{"total":null,"count":0,"offset":0}},"data":[]}`,
			wantField: "meta.pagingInfo.total", wantErr: "missing or negative"},
		// Types.
		{name: "userName a bool", body: strictPage(`{"instanceUid":"a","userName":true}`), wantField: "data[0].userName", wantErr: "got json bool, want string"},
		{name: "role an object", body: strictPage(`{"instanceUid":"a","role":{}}`), wantField: "data[0].role", wantErr: "got json object, want string"},
		{name: "profile a string", body: strictPage(`{"instanceUid":"a","profile":"x"}`), wantField: "data[0].profile", wantErr: "got json string, want object"},
		{name: "meta an array", body: `{"meta":[],"data":[]}`, wantField: "meta", wantErr: "got json array, want object"},
		{name: "paging info a number", body: `{"meta":{"pagingInfo":5},"data":[]}`, wantField: "meta.pagingInfo", wantErr: "got json number, want object"},
		{name: "data an object", body: `{"meta":{"pagingInfo":{"total":0,"count":0,"offset":0}},"data":{}}`, wantField: "data", wantErr: "got json object, want array"},
		{name: "body an array", body: `[]`, wantField: "", wantErr: "got json array, want object"},
		{name: "count a string", body: `{"meta":{"pagingInfo":{"total":0,"count":"0","offset":0}},"data":[]}`, wantField: "meta.pagingInfo.count", wantErr: "got json string, want number"},
		// Missing fields.
		{name: "body null", body: `null`, wantField: "meta", wantErr: "missing"},
		{name: "meta null", body: `{"meta":null,"data":[]}`, wantField: "meta", wantErr: "missing"},
		{name: "data null", body: `{"meta":{"pagingInfo":{"total":0,"count":0,"offset":0}},"data":null}`, wantField: "data", wantErr: "missing or null"},
		{name: "instanceUid null", body: strictPage(`{"instanceUid":null}`), wantField: "data[0].instanceUid", wantErr: "missing or empty"},
		// Syntax.
		{name: "empty body", body: ``, wantErr: "malformed json"},
		{name: "a second value", body: strictPage(`{"instanceUid":"a"}`) + ` {}`, wantErr: "malformed json"},
		{name: "text after the value", body: strictPage(`{"instanceUid":"a"}`) + `x`, wantErr: "malformed json"},
		{name: "truncated in a user", body: `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[{"instanceUid":"a",`, wantErr: "malformed json"},
		{name: "nested deeper than 10000", body: strictPage(`{"instanceUid":"a","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`), wantErr: "malformed json"},
		{name: "nested 10000 deep", body: strictPage(`{"instanceUid":"a","x":` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `}`)},
		{name: "a bad escape", body: strictPage(`{"instanceUid":"a\x"}`), wantErr: "malformed json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodePage("veeam", 2, []byte(tc.body))
			_, oldErr := v1DecodePage("veeam", 2, []byte(tc.body))
			if tc.stricter != (oldErr == nil && err != nil) {
				t.Errorf("stricter is %v, but encoding/json said %v and the decoder %v", tc.stricter, oldErr, err)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				return
			}
			var de *sources.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *sources.DecodeError", err)
			}
			if de.Source != "veeam" || de.Page != 2 || de.Field != tc.wantField {
				t.Errorf("source %q page %d field %q, want veeam 2 %q (%v)", de.Source, de.Page, de.Field, tc.wantField, err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q lacks %q", err, tc.wantErr)
			}
			if len(err.Error()) > 512 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

// TestDecodePageCaseAndRaw: PascalCase names fill the same fields, and raw
// keeps the user's members as they came, compacted.
func TestDecodePageCaseAndRaw(t *testing.T) {
	body := "{\"Meta\":{\"PagingInfo\":{\"Total\":7,\"Count\":1,\"Offset\":3}},\n \"Data\":[ {\"InstanceUid\" : \"a\\u00e9\",\n\t\"OrganizationUID\":\"o\",\"USERNAME\":\"n\",\"Status\":\"Enabled\",\"Role\":\"r\",\r\n\"Profile\":{\"FirstName\":\"f\",\"LastName\":\"l\",\"Email\":\"e\"},\"title\":\"x\",\"Title\":\"y \\\" z\"} ]}"
	p, err := decodePage("veeam", 1, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if p.total != 7 || p.offset != 3 || len(p.users) != 1 {
		t.Fatalf("total %d offset %d users %d", p.total, p.offset, len(p.users))
	}
	u := p.users[0]
	got := []string{u.ID, u.OrganizationID, u.UserName, u.Status, u.Role, u.FirstName, u.LastName, u.Email}
	want := []string{"aé", "o", "n", "enabled", "r", "f", "l", "e"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields %q, want %q", got, want)
	}
	wantRaw := `{"InstanceUid":"a\u00e9","OrganizationUID":"o","USERNAME":"n","Status":"Enabled","Role":"r","Profile":{"FirstName":"f","LastName":"l","Email":"e"},"title":"x","Title":"y \" z"}`
	if string(u.Raw) != wantRaw {
		t.Errorf("raw\n%s\nwant\n%s", u.Raw, wantRaw)
	}
}

// TestCompactIsJSONCompact: raw is what json.Compact made of a user.
func TestCompactIsJSONCompact(t *testing.T) {
	fixture, err := os.ReadFile("testdata/veeam-get-users-response.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		string(fixture),
		`{}`, `[]`, `"a b"`, ` { "a" : [ 1 , 2 , { } ] , "b\\" : "\\\" \\\\" } `,
		"{\"a\":\"\u2028\u2029<>&\",\n\"b\":\t\"\\u2028\"}",
	} {
		var want bytes.Buffer
		if err := json.Compact(&want, []byte(s)); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got := compact(bytes.TrimSpace([]byte(s))); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("compact(%q) = %q, want %q", s, got, want.Bytes())
		}
	}
}

// TestDecodeLookupStrict: a lookup body gets the page's checks, with
// fields below data.
func TestDecodeLookupStrict(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{name: "a lone surrogate in the user", body: `{"data":{"instanceUid":"u-1","userName":"\ud800"}}`, wantErr: "field data: invalid utf-8"},
		{name: "a lone surrogate beside the user", body: `{"data":{"instanceUid":"u-1"},"x":"\ud800"}`, wantErr: "invalid utf-8"},
		{name: "instanceUid twice by case", body: `{"data":{"instanceUid":"u-1","INSTANCEUID":"u-2"}}`, wantErr: "field data.instanceUid: a second member"},
		{name: "data twice", body: `{"data":{"instanceUid":"u-1"},"data":{"instanceUid":"u-2"}}`, wantErr: "field data: a second member"},
		{name: "email a number", body: `{"data":{"instanceUid":"u-1","profile":{"email":1}}}`, wantErr: "field data.profile.email: got json number, want string"},
		{name: "another user", body: `{"data":{"instanceUid":"u-2"}}`, wantErr: `field data.instanceUid: the server answered with another user, "u-2"`},
		{name: "PascalCase", body: `{"Data":{"InstanceUid":"u-1"}}`},
		{name: "the user", body: `{"data":{"instanceUid":"u-1","profile":null}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeLookup("veeam", "u-1", []byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.HasPrefix(tc.wantErr, "invalid") && strings.HasPrefix(err.Error(), "field") {
				t.Fatalf("error %v names a field", err)
			}
		})
	}
}

// stricterOnly reports whether err is one of the failures the streaming
// decoder adds to encoding/json's: a member name twice, a lone surrogate.
func stricterOnly(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "second member") || strings.Contains(msg, "invalid utf-8")
}

// FuzzDecodeMatchesV1: the streaming decoder and the encoding/json one it
// replaced agree. What the new one accepts the old one accepted, with the
// same total, offset and users, raw byte for byte; what the old one
// accepted the new one accepts too, unless it has a member twice or a
// \u escape that is not a character.
func FuzzDecodeMatchesV1(f *testing.F) {
	fixture, err := os.ReadFile("testdata/veeam-get-users-response.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	f.Add([]byte(strictPage(`{"instanceUid":"a","InstanceUid":"b"}`)))
	f.Add([]byte(strictPage(`{"instanceUid":"a\ud800","ſtatus":"K","\u212Aey":1,"profile":{"EMAIL":"e"}}`)))
	f.Add([]byte(`{"Meta":{"PagingInfo":{"Total":1,"Count":1,"Offset":0}},"Data":[{"InstanceUid":"a","Status":"Enabled"}]}`))
	f.Add([]byte("{\"meta\":{\"pagingInfo\":{\"total\":1,\"count\":1.5,\"offset\":0}},\n\"data\":[ {\"instanceUid\" : \"a b\", \"x\" : [1, {\"y\": null}]} ]}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePage("veeam", 1, body)
		old, oldErr := v1DecodePage("veeam", 1, body)
		switch {
		case err == nil && oldErr != nil:
			t.Fatalf("accepted what encoding/json refused (%v)", oldErr)
		case err != nil && oldErr == nil && !stricterOnly(err):
			t.Fatalf("refused what encoding/json accepted: %v", err)
		case err == nil:
			if p.total != old.total || p.offset != old.offset || len(p.users) != len(old.users) {
				t.Fatalf("total %d offset %d users %d, encoding/json %d %d %d", p.total, p.offset, len(p.users), old.total, old.offset, len(old.users))
			}
			for i := range p.users {
				if !reflect.DeepEqual(p.users[i], old.users[i]) {
					t.Fatalf("user %d\n%+v\nencoding/json\n%+v", i, p.users[i], old.users[i])
				}
			}
		}
		if err != nil {
			var de *sources.DecodeError
			if !errors.As(err, &de) || de.Page != 1 || de.Source != "veeam" {
				t.Fatalf("error %v is not a page 1 DecodeError", err)
			}
		}
	})
}

// FuzzLookupMatchesV1 is FuzzDecodeMatchesV1 for lookup bodies.
func FuzzLookupMatchesV1(f *testing.F) {
	f.Add([]byte(`{"data":{"instanceUid":"u-1","profile":{"email":"e"}}}`))
	f.Add([]byte(`{"Data":{"InstanceUid":"u-1"},"x":[]}`))
	f.Add([]byte(`{"data":{"instanceUid":"u-1","userName":"\ud800"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		err := decodeLookup("veeam", "u-1", body)
		oldErr := v1DecodeLookup("veeam", "u-1", body)
		switch {
		case err == nil && oldErr != nil:
			t.Fatalf("accepted what encoding/json refused (%v)", oldErr)
		case err != nil && oldErr == nil && !stricterOnly(err):
			t.Fatalf("refused what encoding/json accepted: %v", err)
		}
	})
}

// FuzzCompact: for any valid JSON value, compact gives json.Compact's
// bytes.
func FuzzCompact(f *testing.F) {
	f.Add([]byte(` { "a" : [ 1 , "x\\\" y" , { } ] , "b\\\\" : "\\\\\"" } `))
	f.Add([]byte("\"\\\\\\\\\" \t"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, b); err != nil {
			t.Fatal(err)
		}
		if got := compact(bytes.TrimSpace(b)); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("compact(%q) = %q, want %q", b, got, want.Bytes())
		}
	})
}

// TestMatchIsEqualFold: member names match as bytes.EqualFold (what
// encoding/json used) says, for ASCII and for non-ASCII letters that
// fold to ASCII ones.
func TestMatchIsEqualFold(t *testing.T) {
	r := newReader(nil, false)
	defer r.release()
	for _, name := range []string{
		"status", "STATUS", "sTaTuS", "ſtatus", "statuſ", "statu", "statuss", "@tatus", "`tatus",
		"role", "ROLE", "rolE", "rol\u212a", "r[le", "r{le", "userName", "USERNAME", "user_name",
		"instanceUid", "instanceuid", "instance\u0055id", "", "é",
	} {
		quoted, _ := json.Marshal(name)
		i, unq, err := r.match(quoted, userNames)
		if err != nil || string(unq) != name {
			t.Fatalf("match(%s): %v, name %q", quoted, err, unq)
		}
		want := -1
		for j, n := range userNames {
			if bytes.EqualFold([]byte(name), []byte(n)) {
				want = j
			}
		}
		if i != want {
			t.Errorf("match(%q) = %d, bytes.EqualFold says %d", name, i, want)
		}
	}
}

// TestDecodeUserStrings: the fields share scratch buffers while a user is
// read; each keeps its own value, escapes unquoted, status lower-cased
// (non-ASCII too), and no user's strings change when the next is read.
func TestDecodeUserStrings(t *testing.T) {
	body := `{"meta":{"pagingInfo":{"total":2,"count":2,"offset":0}},"data":[` +
		`{"status":"ÉNABLED","userName":"n \"q\" \u00e9","instanceUid":"u\u002d1","profile":{"email":"","lastName":"L","firstName":null},"role":"Admin"},` +
		`{"instanceUid":"u-2","status":"DISABLED","organizationUid":"o-2","userName":"x"}]}`
	p, err := decodePage("veeam", 1, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := [][]string{}
	for _, u := range p.users {
		got = append(got, []string{u.ID, u.OrganizationID, u.UserName, u.Status, u.Role, u.FirstName, u.LastName, u.Email})
	}
	want := [][]string{
		{"u-1", "", `n "q" é`, "énabled", "Admin", "", "L", ""},
		{"u-2", "o-2", "x", "disabled", "", "", "", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("users %q, want %q", got, want)
	}
	old, err := v1DecodePage("veeam", 1, []byte(body))
	if err != nil || !reflect.DeepEqual(old.users, p.users) {
		t.Errorf("encoding/json decoded %+v (%v), want %+v", old.users, err, p.users)
	}
}
