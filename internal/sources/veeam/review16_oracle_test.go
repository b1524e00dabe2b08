package veeam

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
)

// review16Bodies are hostile and odd page bodies: escaped member names,
// numbers of every spelling in integer fields, null in every field,
// objects where strings go, a BOM, trailing garbage, data that is not an
// array, deep nesting, long strings and ids on the index's boundaries,
// NUL bytes.
func review16Bodies() map[string]string {
	env := func(total, count, offset string, data string) string {
		return `{"meta":{"pagingInfo":{"total":` + total + `,"count":` + count + `,"offset":` + offset + `}},"data":` + data + `}`
	}
	b := map[string]string{
		"escaped instanceUid":         strictPage(`{"instance\u0055id":"a"}`),
		"fully escaped name":          strictPage(`{"\u0069\u006e\u0073\u0074\u0061\u006e\u0063\u0065\u0055\u0069\u0064":"a"}`),
		"escaped name twice":          strictPage(`{"instance\u0055id":"a","instanceUi\u0064":"b"}`),
		"escaped envelope names":      `{"m\u0065ta":{"paging\u0049nfo":{"tot\u0061l":1,"count":1,"offset":0}},"d\u0061ta":[{"instanceUid":"a"}]}`,
		"long s status":               strictPage(`{"instanceUid":"a","ſtatus":"Enabled"}`),
		"kelvin name unknown":         strictPage(`{"instanceUid":"a","\u212Aey":"x"}`),
		"empty member name":           strictPage(`{"instanceUid":"a","":"x","profile":{"":1}}`),
		"empty member name twice":     strictPage(`{"instanceUid":"a","":"x","":"y"}`),
		"total 1e2":                   env(`1e2`, `1`, `0`, `[]`),
		"total 1E2":                   env(`1E2`, `1`, `0`, `[]`),
		"total -0":                    env(`-0`, `0`, `0`, `[]`),
		"offset -0":                   env(`0`, `0`, `-0`, `[]`),
		"total 1.0":                   env(`1.0`, `0`, `0`, `[]`),
		"total 0.0":                   env(`0.0`, `0`, `0`, `[]`),
		"total -0.0":                  env(`-0.0`, `0`, `0`, `[]`),
		"total max int64":             env(`9223372036854775807`, `0`, `0`, `[]`),
		"total max int64+1":           env(`9223372036854775808`, `0`, `0`, `[]`),
		"offset min int64":            env(`0`, `0`, `-9223372036854775808`, `[]`),
		"total 1e400":                 env(`1e400`, `0`, `0`, `[]`),
		"total 01":                    env(`01`, `0`, `0`, `[]`),
		"total +1":                    env(`+1`, `0`, `0`, `[]`),
		"total string":                env(`"1"`, `0`, `0`, `[]`),
		"total true":                  env(`true`, `0`, `0`, `[]`),
		"total object":                env(`{}`, `0`, `0`, `[]`),
		"count null":                  env(`1`, `null`, `0`, `[{"instanceUid":"a"}]`),
		"count huge":                  env(`1`, `99999999999999999999`, `0`, `[{"instanceUid":"a"}]`),
		"count 1e9 before data":       env(`1`, `1000000000`, `0`, `[{"instanceUid":"a"}]`),
		"every user field null":       strictPage(`{"instanceUid":"a","organizationUid":null,"userName":null,"status":null,"role":null,"profile":null}`),
		"every profile field null":    strictPage(`{"instanceUid":"a","profile":{"firstName":null,"lastName":null,"email":null}}`),
		"meta pagingInfo null":        `{"meta":{"pagingInfo":null},"data":[]}`,
		"offset null":                 env(`0`, `0`, `null`, `[]`),
		"userName an object":          strictPage(`{"instanceUid":"a","userName":{"x":"y"}}`),
		"instanceUid an object":       strictPage(`{"instanceUid":{"a":1}}`),
		"instanceUid an array":        strictPage(`{"instanceUid":["a"]}`),
		"instanceUid a number":        strictPage(`{"instanceUid":1}`),
		"instanceUid empty":           strictPage(`{"instanceUid":""}`),
		"email an array":              strictPage(`{"instanceUid":"a","profile":{"email":["e"]}}`),
		"profile an array":            strictPage(`{"instanceUid":"a","profile":[]}`),
		"BOM":                         "\xef\xbb\xbf" + strictPage(`{"instanceUid":"a"}`),
		"trailing garbage":            strictPage(`{"instanceUid":"a"}`) + `]`,
		"trailing NUL":                strictPage(`{"instanceUid":"a"}`) + "\x00",
		"trailing whitespace":         strictPage(`{"instanceUid":"a"}`) + " \t\r\n",
		"leading whitespace":          " \t\r\n" + strictPage(`{"instanceUid":"a"}`),
		"data a string":               env(`0`, `0`, `0`, `"[]"`),
		"data a number":               env(`0`, `0`, `0`, `0`),
		"data true":                   env(`0`, `0`, `0`, `true`),
		"data an object of users":     env(`1`, `1`, `0`, `{"0":{"instanceUid":"a"}}`),
		"a user null":                 strictPage(`null`),
		"a user an array":             strictPage(`[{"instanceUid":"a"}]`),
		"a user a string":             strictPage(`"a"`),
		"users then null":             strictPage(`{"instanceUid":"a"},null`),
		"trailing comma in data":      strictPage(`{"instanceUid":"a"},`),
		"trailing comma in user":      strictPage(`{"instanceUid":"a",}`),
		"NUL in id":                   strictPage(`{"instanceUid":"a\u0000b"}`),
		"raw NUL in string":           strictPage("{\"instanceUid\":\"a\x00b\"}"),
		"raw tab in string":           strictPage("{\"instanceUid\":\"a\tb\"}"),
		"escaped slash and quote":     strictPage(`{"instanceUid":"a\/b\"c\\"}`),
		"whitespace everywhere":       "{ \"meta\" :\t{\r\n\"pagingInfo\" : { \"total\" : 1 , \"count\" : 1 , \"offset\" : 0 } } ,\n \"data\" : [ { \"instanceUid\" : \"a b\" , \"x\" : [ 1 , { } , \" \\\" \" ] } ] }",
		"deep nesting in a user":      strictPage(`{"instanceUid":"a","x":` + strings.Repeat(`{"y":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}`),
		"nesting in a string field":   strictPage(`{"instanceUid":"a","role":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}`),
		"id of 4097 bytes":            strictPage(`{"instanceUid":"` + strings.Repeat("i", 4097) + `"}`),
		"id of 65536 bytes":           strictPage(`{"instanceUid":"` + strings.Repeat("i", 65536) + `"}`),
		"userName of 2 MB":            strictPage(`{"instanceUid":"a","userName":"` + strings.Repeat("n", 2<<20) + `"}`),
		"escape-heavy userName":       strictPage(`{"instanceUid":"a","userName":"` + strings.Repeat(`\u00e9\"`, 20000) + `"}`),
		"status upper non-ASCII":      strictPage(`{"instanceUid":"a","status":"ÉNABLED"}`),
		"status Kelvin":               strictPage(`{"instanceUid":"a","status":"\u212A"}`),
		"ids differing by case":       env(`2`, `2`, `0`, `[{"instanceUid":"a"},{"instanceUid":"A"}]`),
		"same id twice in a page":     env(`2`, `2`, `0`, `[{"instanceUid":"a"},{"instanceUid":"a"}]`),
		"profile twice by case":       strictPage(`{"instanceUid":"a","profile":{"email":"x"},"Profile":null}`),
		"unknown members by case":     strictPage(`{"instanceUid":"a","profile":{"title":"x","Title":"y"},"Credentials":{"password":"p"},"credentials":null}`),
		"meta after data":             `{"data":[{"instanceUid":"a"}],"meta":{"pagingInfo":{"offset":0,"count":1,"total":1}}}`,
		"body a number":               `1`,
		"body a string":               `"x"`,
		"body empty object":           `{}`,
		"body whitespace":             " ",
		"two bodies":                  strictPage(`{"instanceUid":"a"}`) + strictPage(`{"instanceUid":"b"}`),
		"truncated in a string":       strictPage(`{"instanceUid":"a`)[:60],
		"invalid utf-8 in an unknown": strictPage("{\"instanceUid\":\"a\",\"x\":\"\xed\xa0\x80\"}"),
		"surrogate pair escaped":      strictPage(`{"instanceUid":"\uD83D\uDE00"}`),
		"lone surrogate then valid":   strictPage(`{"instanceUid":"a","x":"\uD83D\u0041"}`),
		"overlong utf-8":              strictPage("{\"instanceUid\":\"\xc0\xaf\"}"),
		"U+2028 in an id":             strictPage("{\"instanceUid\":\"a\u2028b\"}"),
	}
	return b
}

// The streaming decoder against the encoding/json oracle on each of these:
// what it accepts the oracle accepts, with the same users, raw byte for
// byte; what it refuses that the oracle accepted is a duplicate member or
// a lone surrogate; every error is a DecodeError of the page, bounded.
func TestReview16DecoderMatchesOracleOnHostileBodies(t *testing.T) {
	for name, body := range review16Bodies() {
		t.Run(name, func(t *testing.T) {
			p, err := decodePage("veeam", 4, []byte(body))
			old, oldErr := v1DecodePage("veeam", 4, []byte(body))
			switch {
			case err == nil && oldErr != nil:
				t.Fatalf("accepted what encoding/json refused (%v)", oldErr)
			case err != nil && oldErr == nil && !stricterOnly(err):
				t.Fatalf("refused what encoding/json accepted: %v", err)
			case err == nil:
				if p.total != old.total || p.offset != old.offset || len(p.users) != len(old.users) {
					t.Fatalf("total %d offset %d users %d; encoding/json %d %d %d", p.total, p.offset, len(p.users), old.total, old.offset, len(old.users))
				}
				for i := range p.users {
					if !reflect.DeepEqual(p.users[i], old.users[i]) {
						t.Fatalf("user %d differs from encoding/json's", i)
					}
				}
			}
			if err != nil {
				var de *sources.DecodeError
				if !errors.As(err, &de) || de.Source != "veeam" || de.Page != 4 {
					t.Fatalf("error %v is not a DecodeError of page 4", err)
				}
				if len(err.Error()) > 512 {
					t.Errorf("error of %d bytes", len(err.Error()))
				}
			}
		})
	}
}

// Decoders share pooled readers and scratch buffers: users decoded at
// once on many goroutines keep their own strings and raw (go test -race).
func TestReview16DecodeConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := fmt.Sprintf("u-%d-%d", g, i)
				body := strictPage(`{"instanceUid":"` + id + `","status":"ENABLED","userName":"n` + id + `","profile":{"email":"` + id + `@x"}}`)
				p, err := decodePage("veeam", 1, []byte(body))
				if err != nil {
					t.Error(err)
					return
				}
				u := p.users[0]
				if u.ID != id || u.UserName != "n"+id || u.Email != id+"@x" || u.Status != "enabled" || !strings.Contains(string(u.Raw), id) {
					t.Errorf("user %+v, want id %s", u, id)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Lookup bodies against the encoding/json oracle: an answer is taken for
// the user only when both would take it.
func TestReview16LookupMatchesOracle(t *testing.T) {
	for _, body := range []string{
		`{"data":{"instanceUid":"u-1"}}`,
		`{"DATA":{"INSTANCEUID":"u-1"}}`,
		`{"d\u0061ta":{"instance\u0055id":"u-1"}}`,
		`{"data":{"instanceUid":"u-1"},"data":null}`,
		`{"data":null,"Data":{"instanceUid":"u-1"}}`,
		`{"data":[{"instanceUid":"u-1"}]}`,
		`{"data":{"instanceUid":"u-1"}} x`,
		"\xef\xbb\xbf" + `{"data":{"instanceUid":"u-1"}}`,
		`{"data":{"instanceUid":"U-1"}}`,
		`{"data":{"instanceUid":"u-1\u0000"}}`,
		`{"data":{"instanceUid":"u-1","profile":{"email":{}}}}`,
		`{"data":{"instanceUid":null}}`,
		`{"data":{}}`,
		`{"data":"u-1"}`,
		`{}`,
		`null`,
		`{"errors":[{"message":"not found"}]}`,
		`{"data":{"instanceUid":"u-1"},"meta":{"x":"` + "\xff" + `"}}`,
	} {
		err := decodeLookup("veeam", "u-1", []byte(body))
		oldErr := v1DecodeLookup("veeam", "u-1", []byte(body))
		switch {
		case err == nil && oldErr != nil:
			t.Errorf("%.60q: accepted what encoding/json refused (%v)", body, oldErr)
		case err != nil && oldErr == nil && !stricterOnly(err):
			t.Errorf("%.60q: refused what encoding/json accepted: %v", body, err)
		}
	}
}
