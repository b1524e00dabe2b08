package main

import (
	"bytes"
	"context"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// The poller answers --version and --help without starting, and refuses an
// argument it does not know (it used to ignore them all and start polling).
func TestArguments(t *testing.T) {
	// An environment that would start a poller, were it read.
	env := envconfig.MapLookuper(map[string]string{"VPP_STOKEN": "x", "NATS_URL": "nats://127.0.0.1:1"})
	for _, tc := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"--version"}, 0, "poller ", ""},
		{[]string{"-version"}, 0, runtime.Version(), ""},
		{[]string{"--help"}, 0, "usage: poller", ""},
		{[]string{"-h"}, 0, "README.md", ""},
		{[]string{"--bogus"}, 2, "", `unknown argument "--bogus"`},
		{[]string{"--help", "--bogus"}, 0, "usage: poller", ""},
		{[]string{"run"}, 2, "", `unknown argument "run"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // whatever starts stops at once
			code := run(ctx, tc.args, env, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.inErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out.String(), errOut.String(), tc.code, tc.out, tc.inErr)
			}
		})
	}
}

// --help lists every environment variable with the default the poller
// really uses: both come from the same struct tags.
func TestHelpListsEnvironment(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, envconfig.MapLookuper(nil), &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, re := range []string{`(?m)^  VPP_INTERVAL +15m$`, `(?m)^  VEEAM_PAGE_SIZE +500$`, `(?m)^  MAX_REMOVAL_RATIO +0\.2$`, `(?m)^  NATS_URL +\(unset\)$`} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("--help lacks %s:\n%s", re, out.String())
		}
	}
}
