package strictjson_test

import (
	"encoding/json"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/strictjson"
)

// An integer field (VPP's userId, the user key, is one: vpp/decode.go
// decodeUser) either gets the exact integer the server sent or an error.
// FlexInt falls back to float64 for "4.0" and "1e3", and float64 has 53
// bits: a fraction near an integer is taken for it, and a large integral
// value written with a fraction or exponent becomes a neighbouring
// integer, silently: another user's key.
func TestReview16FlexIntIsExactOrRefused(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // if accepted, it must be this
		frac bool  // not an integer at all: must be refused
	}{
		{in: `0.99999999999999999`, frac: true},
		{in: `"0.99999999999999999"`, frac: true},
		{in: `123456789012345678.9`, frac: true},
		{in: `9007199254740993.0`, want: 9007199254740993},
		{in: `"9007199254740993.0"`, want: 9007199254740993},
		{in: `9007199254740993e0`, want: 9007199254740993},
		{in: `1000000000000000001.0`, want: 1000000000000000001},
		{in: `"0x1p4"`, frac: true}, // not a JSON number, in a string or not
	} {
		got := int64(-1)
		err := strictjson.Int(json.RawMessage(tc.in), &got)
		switch {
		case tc.frac && err == nil:
			t.Errorf("Int(%s) = %d, want an error: it is not an integer", tc.in, got)
		case !tc.frac && err == nil && got != tc.want:
			t.Errorf("Int(%s) = %d, want %d or an error", tc.in, got, tc.want)
		}
	}
}
