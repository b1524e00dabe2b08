package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
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

// Every subcommand answers -h/--help/help with its own usage on stdout and
// exit 0 (it used to exit 2 with Go's flag output, "flag: help requested"
// and the whole top-level usage); an unknown flag, argument or subcommand
// exits 2 with that subcommand's usage, before anything starts.
func TestSubcommandHelpAndMistakes(t *testing.T) {
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": "nats://127.0.0.1:1"})
	for _, tc := range []struct {
		args          []string
		code          int
		out, inErr    string
		notOut, noErr string
	}{
		{args: []string{"-help"}, code: 0, out: "notifier replay [flags]"},
		{args: []string{"replay", "--help"}, code: 0, out: "usage: notifier replay [flags]", notOut: "deadletter redrive"},
		{args: []string{"replay", "-h"}, code: 0, out: "-as-of"},
		{args: []string{"replay", "help"}, code: 0, out: "-since"},
		{args: []string{"replay", "--bogus"}, code: 2, inErr: "flag provided but not defined: -bogus", noErr: "notifier deadletter redrive"},
		{args: []string{"replay", "--source", "vpp", "extra"}, code: 2, inErr: `unexpected argument "extra"`},
		{args: []string{"deadletter", "--help"}, code: 0, out: "list|redrive"},
		{args: []string{"deadletter", "list", "--help"}, code: 0, out: "usage: notifier deadletter list [flags]"},
		{args: []string{"deadletter", "redrive", "-h"}, code: 0, out: "-sink"},
		{args: []string{"deadletter", "nosuch"}, code: 2, inErr: `unknown subcommand "nosuch"`},
		{args: []string{"deadletter"}, code: 2, inErr: "a subcommand is missing"},
		{args: []string{"deadletter", "list", "--bogus"}, code: 2, inErr: "usage: notifier deadletter list [flags]"},
		{args: []string{"run", "--bogus"}, code: 2, inErr: `unexpected argument "--bogus"`},
		{args: []string{"run", "--help"}, code: 0, out: "RETRY_SCHEDULE"},
		{args: []string{"-h"}, code: 0, out: "--format json|text"},
		{args: []string{"replay", "--help"}, code: 0, out: "a date is midnight UTC at its start"},
		{args: []string{"replay", "-h"}, code: 0, out: "-format string"},
		{args: []string{"deadletter", "list", "-h"}, code: 0, out: "-json"},
		{args: []string{"replay", "--format", "text", "--to", "webhook"}, code: 2, inErr: "--format applies to the console only"},
		{args: []string{"replay", "--format", "yaml"}, code: 2, inErr: `--format "yaml": want json or text`},
		{args: []string{"replay", "--source", "vpp", "--as-of", "2999-01-01"}, code: 2, inErr: "time is in the future"},
		{args: []string{"replay", "--since", "last tuesday"}, code: 2, inErr: `"last tuesday" is not a time`},
		{args: []string{"deadletter", "redrive", "--json"}, code: 2, inErr: "flag provided but not defined: -json"},
		{args: []string{"web", "--help"}, code: 0, out: "WEB_HTPASSWD_FILE"},
		{args: []string{"web", "-h"}, code: 0, out: "WEB_ADDR"},
		{args: []string{"web", "--bogus"}, code: 2, inErr: "flag provided but not defined: -bogus"},
		{args: []string{"web", "extra"}, code: 2, inErr: `unexpected argument "extra"`},
		{args: []string{"-h"}, code: 0, out: "notifier web"},
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
			if tc.code == 0 && errOut.Len() > 0 {
				t.Errorf("help wrote to stderr: %q", errOut.String())
			}
			if tc.notOut != "" && strings.Contains(out.String(), tc.notOut) || tc.noErr != "" && strings.Contains(errOut.String(), tc.noErr) {
				t.Errorf("more than the subcommand's usage: stdout %q, stderr %q", out.String(), errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), "help requested") {
				t.Errorf("Go's flag message leaked: %q %q", out.String(), errOut.String())
			}
		})
	}
}

// help lists the service's environment variables with their defaults.
func TestHelpListsEnvironment(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"help"}, envconfig.MapLookuper(nil), &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h", "WEBHOOK_TIMEOUT", "WEBHOOK_<n>_SECRET"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// A command that fails (not a usage mistake) exits 1 with one line naming
// what is wrong, not a list of skipped items and exit 0.
func TestFailuresExitOne(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	if _, err := bus.Ensure(context.Background(), js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": srv.ClientURL()})
	for _, tc := range []struct {
		args  []string
		inErr string
	}{
		{[]string{"deadletter", "redrive", "--sink", "webhook-2"}, "notifier: --sink webhook-2: no such sink is configured (configured: console)\n"},
		{[]string{"deadletter", "list", "--sink", "webhook-2"}, "notifier: --sink webhook-2: unknown sink (sinks with dead letters: none; configured sinks: console)\n"},
		{[]string{"replay", "--source", "nosuch"}, "notifier: --source: unknown source \"nosuch\": no source has completed a first snapshot on this NATS server yet\n"},
		{[]string{"replay", "--user", "nobody@school.example"}, "notifier: --user: unknown user: no user of any source has the id, e-mail address or user name \"nobody@school.example\"\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, env, &out, &errOut)
			if code != 1 || errOut.String() != tc.inErr || out.Len() > 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", code, out.String(), errOut.String(), tc.inErr)
			}
		})
	}
}
