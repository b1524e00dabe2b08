package events_test

import (
	"strings"
	"testing"

	"github.com/rollcall/rollcall/pkg/events"
)

func TestCheckType(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		ok   bool
	}{
		{"registered", events.TypeRegistered, true},
		{"role changed", events.TypeRoleChanged, true},
		{"misspelt", "user.retierd", false},
		{"without prefix", "retired", false},
		{"wrong case", "user.rolechanged", false},
		{"padded", " user.retired", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := events.CheckType(tt.typ)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckType(%q) = %v", tt.typ, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckType(%q) accepted an unknown type", tt.typ)
			}
			for _, want := range append([]string{`"` + tt.typ + `"`}, events.Types...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
}

func TestCheckSourceName(t *testing.T) {
	tests := []struct {
		name   string
		source string
		ok     bool
	}{
		{"plain", "vpp", true},
		{"dash and underscore", "school-a_2", true},
		{"upper case", "VPP", false},
		{"dot", "Bad.Name", false},
		{"wildcard", "*", false},
		{"starts with a digit", "1school", false},
		{"too long", strings.Repeat("a", 65), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := events.CheckSourceName(tt.source)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckSourceName(%q) = %v, want ok %v", tt.source, err, tt.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), `"`+tt.source+`"`) || !strings.Contains(err.Error(), "lower-case")) {
				t.Errorf("error %q does not name the value and the rule", err)
			}
		})
	}
}
