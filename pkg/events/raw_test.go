package events_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/pkg/events"
)

func TestCapRaw(t *testing.T) {
	big := strings.Repeat("n", 2<<20)
	tests := []struct {
		name    string
		raw     string
		max     int
		cut     bool
		has     []string // substrings the result keeps
		without []string
	}{
		{"small stays", `{"userName":"a"}`, 100, false, []string{`"userName":"a"`}, nil},
		{"long member cut, others kept", `{"instanceUid":"u-1","userName":"` + big + `","role":"CompanyOwner"}`, 4096, true,
			[]string{`"instanceUid":"u-1"`, `"role":"CompanyOwner"`, `"userName":"[cut: `, `"_rollcallCut":{"cut":true,"bytes":`}, []string{"nnnn"}},
		{"not an object", `["` + big + `"]`, 4096, true, []string{`{"_rollcallCut":{"cut":true`}, nil},
		{"still too big", `{` + strings.Repeat(`"k":"v",`, 2000) + `"x":1}`, 1000, true, []string{`{"_rollcallCut":{"cut":true`}, []string{`"k"`}},
		{"invalid json", `{"a":` + big, 4096, true, []string{`{"_rollcallCut"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, cut := events.CapRaw(json.RawMessage(tt.raw), tt.max)
			if cut != tt.cut {
				t.Fatalf("cut = %v", cut)
			}
			if len(out) > tt.max {
				t.Fatalf("result of %d bytes, above %d", len(out), tt.max)
			}
			if !json.Valid(out) {
				t.Fatalf("result is not JSON: %.200s", out)
			}
			for _, s := range tt.has {
				if !strings.Contains(string(out), s) {
					t.Errorf("result lacks %q: %.300s", s, out)
				}
			}
			for _, s := range tt.without {
				if strings.Contains(string(out), s) {
					t.Errorf("result keeps %q", s)
				}
			}
		})
	}
}

// FuzzCapRaw: whatever a source sends as its record, the capped record is
// valid JSON within the limit, and one within the limit is kept as it is.
func FuzzCapRaw(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"` + strings.Repeat("x", 3000) + `"}`, `[1,2,3]`, `"s"`, `{"_rollcallCut":1,"b":{"c":[1,2]}}`, `{`, ``} {
		f.Add([]byte(s), 512)
	}
	f.Fuzz(func(t *testing.T, raw []byte, max int) {
		if max < 64 || max > 1<<20 {
			return
		}
		out, cut := events.CapRaw(json.RawMessage(raw), max)
		if !cut {
			if string(out) != string(raw) || len(raw) > max {
				t.Fatalf("kept %d bytes with max %d, or changed them", len(raw), max)
			}
			return
		}
		if len(out) > max || !json.Valid(out) || !strings.Contains(string(out), events.RawCutKey) {
			t.Fatalf("cut %d bytes to %q (max %d)", len(raw), out, max)
		}
	})
}
