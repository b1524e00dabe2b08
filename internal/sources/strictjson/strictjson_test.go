package strictjson_test

import (
	"encoding/json"
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
