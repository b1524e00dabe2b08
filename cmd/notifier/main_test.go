package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// version, --version and -version print the build without starting; an
// unknown command is a usage error.
func TestVersionAndUnknownCommand(t *testing.T) {
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": "nats://127.0.0.1:1"})
	for _, tc := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"version"}, 0, "notifier ", ""},
		{[]string{"--version"}, 0, runtime.Version(), ""},
		{[]string{"-version"}, 0, "revision ", ""},
		{[]string{"--help"}, 0, "notifier version", ""},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			code := run(ctx, tc.args, env, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.inErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out.String(), errOut.String(), tc.code, tc.out, tc.inErr)
			}
		})
	}
}
