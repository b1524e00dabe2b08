package pollerapp_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
)

// Issue 17: kind vpp2 is configured like vpp, with VPP2_ variables, alone
// or in SOURCES with the <NAME>_ prefix.
func TestVPP2Configuration(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // in the error; "" accepted
	}{
		{"single", map[string]string{"VPP2_STOKEN_FILE": "/run/secrets/stoken"}, ""},
		{"named", map[string]string{"SOURCES": "school:vpp2", "SCHOOL_VPP2_STOKEN_FILE": "/run/secrets/stoken"}, ""},
		{"beside vpp and veeam", map[string]string{"SOURCES": "a:vpp,b:vpp2,c:veeam", "A_VPP_STOKEN": "x", "B_VPP2_STOKEN": "y",
			"C_VEEAM_BASE_URL": "https://spc.example.com", "C_VEEAM_TOKEN": "t"}, ""},
		{"named without token", map[string]string{"SOURCES": "school:vpp2", "SCHOOL_VPP_STOKEN": "x"}, "SCHOOL_VPP2_STOKEN or SCHOOL_VPP2_STOKEN_FILE"},
		{"single beside SOURCES", map[string]string{"SOURCES": "school:vpp2", "SCHOOL_VPP2_STOKEN": "x", "VPP2_STOKEN": "y"}, "VPP2_STOKEN"},
		{"bad kind", map[string]string{"SOURCES": "school:vpp3"}, "name:vpp2"},
		{"zero interval", map[string]string{"VPP2_STOKEN": "x", "VPP2_INTERVAL": "0s"}, "VPP2_INTERVAL must be positive"},
		{"negative full sync", map[string]string{"SOURCES": "s:vpp2", "S_VPP2_STOKEN": "x", "S_VPP2_FULL_SYNC_INTERVAL": "-1h"}, "S_VPP2_FULL_SYNC_INTERVAL"},
		{"http base", map[string]string{"VPP2_STOKEN": "x", "VPP2_BASE_URL": "http://vpp.example/mdm/v2"}, "VPP2_BASE_URL is an http:// URL, which would send the sToken"},
		{"http service config", map[string]string{"SOURCES": "s:vpp2", "S_VPP2_STOKEN": "x", "S_VPP2_SERVICE_CONFIG_URL": "http://vpp.example/c"}, "S_VPP2_SERVICE_CONFIG_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := pollerapp.Load(context.Background(), envconfig.MapLookuper(tc.env))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
