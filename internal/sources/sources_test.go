package sources_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
)

// A setting's value is quoted to say what was refused, but never a URL's
// query, which may hold a key.
func TestSettingErrorQuotesNoQuery(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"plain", "spc.example.com", `VEEAM_BASE_URL "spc.example.com": bad`},
		{"query", "vpp.example.com/mdm?key=hunter2", `VEEAM_BASE_URL "vpp.example.com/mdm?…": bad`},
		{"no value", "", `VEEAM_BASE_URL: bad`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := (&sources.SettingError{Setting: "VEEAM_BASE_URL", Value: tt.value, Err: errors.New("bad")}).Error()
			if got != tt.want || strings.Contains(got, "hunter2") {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
