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
		{"userinfo", "https://admin:hunter2@spc.example.com:1280/api", `VEEAM_BASE_URL "https://…@spc.example.com:1280/api": bad`},
		{"userinfo without scheme", "admin:hunter2@spc.example.com", `VEEAM_BASE_URL "…@spc.example.com": bad`},
		{"userinfo and query", "https://u:hunter2@spc.example.com/p?key=hunter2", `VEEAM_BASE_URL "https://…@spc.example.com/p?…": bad`},
		{"at sign in the path", "https://spc.example.com/a@b", `VEEAM_BASE_URL "https://spc.example.com/a@b": bad`},
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
