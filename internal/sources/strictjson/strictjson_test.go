package strictjson_test

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/strictjson"
)

func TestObject(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{`{"a":1,"b":{"a":2,"a":3}}`, ""}, // only the object's own members count
		{`{"a":1,"a":1}`, `member "a" appears twice`},
		{`{"a\u0062":1,"ab":2}`, `member "ab" appears twice`}, // the same name, spelled twice
		{`[1]`, "want an object, got an array"},
		{`{"a":1} {}`, "data after the object"},
		{`{"a" 1}`, "malformed JSON"},
		{`null`, "want an object, got an invalid value"},
		{`{"a":`, "truncated JSON"},
	} {
		_, err := strictjson.Object([]byte(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Object(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{{`7`, 7, false}, {`"7"`, 7, false}, {`1e3`, 1000, false}, {`null`, -1, false}, {`1.5`, 0, true}, {`true`, 0, true}, {`"x"`, 0, true}} {
		got := int64(-1)
		err := strictjson.Int(json.RawMessage(tc.in), &got)
		if (err != nil) != tc.err || !tc.err && got != tc.want {
			t.Errorf("Int(%s) = %d, %v", tc.in, got, err)
		}
	}
}

func TestParseIntEdges(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // "" accepts
	}{
		{`9223372036854775807`, 9223372036854775807, ""},
		{`-9223372036854775808`, -9223372036854775808, ""},
		{`9223372036854775808`, 0, "fits 64 bits"},
		{`-9223372036854775809`, 0, "fits 64 bits"},
		{`92233720368547758.07e2`, 9223372036854775807, ""},
		{`9.223372036854775808e18`, 0, "fits 64 bits"},
		{`1e19`, 0, "fits 64 bits"},
		{`1e999999999999999999999`, 0, "fits 64 bits"},
		{`0e999999999999999999999`, 0, ""},
		{`-0.0`, 0, ""},
		{`4.000`, 4, ""},
		{`4.`, 4, ""}, // strconv.ParseFloat took it in a string
		{`+7`, 7, ""}, // strconv.ParseInt took it in a string
		{`007`, 7, ""},
		{`1230e-1`, 123, ""},
		{`1235e-1`, 0, "fraction"},
		{`0.5`, 0, "fraction"},
		{`1e-999999999999999999999`, 0, "fraction"},
		{`100000000000000000000000e-5`, 1000000000000000000, ""},
		{`0.000000000000000000000001e24`, 1, ""},
		{`Inf`, 0, "not an integer"},
		{`NaN`, 0, "not an integer"},
		{`0x10`, 0, "not an integer"},
		{`1_000`, 0, "not an integer"},
		{`1e`, 0, "not an integer"},
		{``, 0, "not an integer"},
		{`-`, 0, "not an integer"},
		{`.`, 0, "not an integer"},
		{`1 2`, 0, "not an integer"},
	} {
		got, err := strictjson.ParseInt(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseInt(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseInt(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.err)
		}
	}
}

// FuzzParseInt compares ParseInt with exact rational arithmetic: it
// accepts a JSON number exactly when the number is an integer that fits
// int64, and then returns that integer.
func FuzzParseInt(f *testing.F) {
	for _, s := range []string{`0`, `-1.50e1`, `9223372036854775807`, `9007199254740993.0`, `1e3`, `0.1e1`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := strictjson.ParseInt(s)
		if !json.Valid([]byte(s)) || len(s) == 0 || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) || len(s) > 200 {
			return // not a JSON number, or too long for big.Rat to be quick
		}
		if e := strings.IndexAny(s, "eE"); e >= 0 && len(s)-e > 5 {
			return // an exponent big.Rat would take long to expand
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return
		}
		want := r.IsInt() && r.Num().IsInt64()
		switch {
		case want && (err != nil || got != r.Num().Int64()):
			t.Fatalf("ParseInt(%q) = %d, %v; want %s", s, got, err, r.Num())
		case !want && err == nil:
			t.Fatalf("ParseInt(%q) = %d, want an error", s, got)
		}
	})
}
