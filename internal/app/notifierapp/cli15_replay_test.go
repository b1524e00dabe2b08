package notifierapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

func vppPerson(id, email, status string) events.User {
	return events.User{Source: "vpp", SourceKind: events.KindVPP, ID: id, Email: email, Status: status}
}

// mailTrail is a vpp source whose users 118 and 120 share an e-mail
// address (in different case): a baseline, then one run of changes.
func mailTrail(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	base := []events.User{
		vppPerson("118", "person118@school.example", "associated"),
		vppPerson("119", "person119@school.example", "registered"),
		vppPerson("120", "Person118@School.example", "registered"),
	}
	b, _ := json.Marshal(base)
	if _, err := h.Baselines.PutBytes(ctx, "vpp", b); err != nil {
		t.Fatal(err)
	}
	prev := map[string]diff.Prev{}
	for i, u := range base {
		prev[u.ID] = diff.Prev{User: u, Revision: uint64(i + 1)}
	}
	time.Sleep(20 * time.Millisecond)
	r, err := diff.Compute(diff.Input{Source: "vpp", Kind: events.KindVPP, Previous: prev, Complete: true, Observed: time.Now(),
		Snapshot: []events.User{
			vppPerson("118", "person118@school.example", "retired"),
			vppPerson("119", "person119@school.example", "associated"),
			vppPerson("120", "Person118@School.example", "associated"),
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, js, r.Events); err != nil {
		t.Fatal(err)
	}
}

type cmdRun func(args ...string) (stdout, stderr string, err error)

func replayCmd(t *testing.T, extra map[string]string) (cmdRun, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	m := map[string]string{"NATS_URL": srv.ClientURL()}
	for k, v := range extra {
		m[k] = v
	}
	env := envconfig.MapLookuper(m)
	return func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := notifierapp.Replay(context.Background(), args, env, &out, &errOut)
		return out.String(), errOut.String(), err
	}, js
}

// TestReplayFormat: --format text prints the console's text lines, json
// (the default) CloudEvents JSON lines; --format is for the console only.
func TestReplayFormat(t *testing.T) {
	run, js := replayCmd(t, nil)
	trail(t, js)
	for _, tc := range []struct {
		name  string
		args  []string
		lines []string // each line holds its string, in order
		usage string   // a usage error holding this
	}{
		{name: "default json", args: nil, lines: []string{`"type":"user.roleChanged"`, `"type":"user.registered"`, `"type":"user.retired"`}},
		{name: "json", args: []string{"--format", "json"}, lines: []string{`{"`, `{"`, `{"`}},
		{name: "text", args: []string{"--format", "text"}, lines: []string{
			"Z  veeam  user alice alice  role changed: CompanyOwner → CompanyAdministrator",
			"Z  veeam  user carol carol  registered as enabled, role CompanyUser",
			"Z  veeam  user bob bob  retired: enabled → removed",
		}},
		{name: "text of one user", args: []string{"--format", "text", "--user", "bob"}, lines: []string{"user bob bob  retired"}},
		{name: "unknown format", args: []string{"--format", "xml"}, usage: `--format "xml": want json or text`},
		{name: "format with webhook", args: []string{"--format", "text", "--to", "webhook"}, usage: "--format applies to the console only"},
		{name: "json format with slack", args: []string{"--format", "json", "--to", "slack"}, usage: "--format applies to the console only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(tc.args...)
			if tc.usage != "" {
				if !errors.Is(err, notifierapp.ErrUsage) || !strings.Contains(err.Error(), tc.usage) {
					t.Fatalf("err %v, want a usage error with %q", err, tc.usage)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			got := lines(out)
			if len(got) != len(tc.lines) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(tc.lines), out)
			}
			for i, want := range tc.lines {
				if !strings.Contains(got[i], want) {
					t.Errorf("line %d %q lacks %q", i, got[i], want)
				}
			}
		})
	}
}

// TestReplayAsOfFormats: --as-of prints JSON lines by default and an
// aligned table with --format text.
func TestReplayAsOfFormats(t *testing.T) {
	run, js := replayCmd(t, nil)
	trail(t, js)
	out, _, err := run("--source", "veeam", "--as-of", "now")
	if err != nil || len(lines(out)) != 2 || !strings.HasPrefix(out, `{"source":"veeam"`) {
		t.Fatalf("json: %v\n%s", err, out)
	}
	out, errOut, err := run("--source", "veeam", "--as-of", "now", "--format", "text")
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID     USER NAME  STATUS   ROLE\n" +
		"alice  alice      enabled  CompanyAdministrator\n" +
		"carol  carol      enabled  CompanyUser\n"
	if out != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errOut, "2 users in veeam as of ") {
		t.Errorf("stderr %q", errOut)
	}
}

// TestReplayTimes: the forms of time a person types.
func TestReplayTimes(t *testing.T) {
	run, js := replayCmd(t, nil)
	trail(t, js)
	for _, tc := range []struct {
		name  string
		args  []string
		n     int    // events (or users with --as-of) printed
		usage string // a usage error holding this
		err   string // another error holding this
	}{
		{name: "since an hour ago", args: []string{"--since", "1h"}, n: 3},
		{name: "since a day ago", args: []string{"--since", "1d"}, n: 3},
		{name: "since a date", args: []string{"--since", "2020-01-01"}, n: 3},
		{name: "since now", args: []string{"--since", "now"}, n: 0},
		{name: "since a future date", args: []string{"--since", "2999-01-01"}, n: 0},
		{name: "until two weeks ago", args: []string{"--until", "2w"}, n: 0},
		{name: "until now", args: []string{"--until", "now"}, n: 3},
		{name: "since and until", args: []string{"--since", "1d12h", "--until", "now"}, n: 3},
		{name: "rfc 3339", args: []string{"--since", "2020-01-01T00:00:00Z"}, n: 3},
		{name: "as of now", args: []string{"--source", "veeam", "--as-of", "now"}, n: 2},
		{name: "as of the future", args: []string{"--source", "veeam", "--as-of", "2999-01-01"}, usage: "--as-of 2999-01-01: 2999-01-01T00:00:00Z: time is in the future"},
		{name: "as of in a minute", args: []string{"--source", "veeam", "--as-of", time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}, usage: "time is in the future"},
		{name: "as of before the baseline", args: []string{"--source", "veeam", "--as-of", "1w"}, err: "no state before the baseline"},
		{name: "words", args: []string{"--since", "yesterday"}, usage: `--since "yesterday" is not a time: want RFC 3339`},
		{name: "negative", args: []string{"--until", "-1h"}, usage: "cannot be negative"},
		{name: "until before since", args: []string{"--since", "1h", "--until", "2h"}, usage: "is before --since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(tc.args...)
			switch {
			case tc.usage != "":
				if !errors.Is(err, notifierapp.ErrUsage) || !strings.Contains(err.Error(), tc.usage) {
					t.Fatalf("err %v, want a usage error with %q", err, tc.usage)
				}
			case tc.err != "":
				if err == nil || errors.Is(err, notifierapp.ErrUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want an error with %q", err, tc.err)
				}
			case err != nil:
				t.Fatalf("%v\n%s", err, errOut)
			default:
				if got := strings.Count(out, "\n"); got != tc.n {
					t.Fatalf("%d lines, want %d:\n%s", got, tc.n, out)
				}
			}
		})
	}
}

// TestReplayUserByMailOrName: --user takes an e-mail address or user name
// too; a shared address replays every user who has it and says so.
func TestReplayUserByMailOrName(t *testing.T) {
	run, js := replayCmd(t, nil)
	mailTrail(t, js)
	trail(t, js) // a veeam source too
	for _, tc := range []struct {
		name     string
		args     []string
		subjects []string // of the events printed, in order
		stderr   string
		err      string
	}{
		{name: "id", args: []string{"--source", "vpp", "--user", "119"}, subjects: []string{"119"}},
		{name: "e-mail of one user", args: []string{"--user", "PERSON119@school.example"}, subjects: []string{"119"}},
		{name: "shared e-mail", args: []string{"--source", "vpp", "--user", "person118@school.example"}, subjects: []string{"118", "120"},
			stderr: "replay: --user person118@school.example matches 2 users (vpp/118, vpp/120); replaying all of them"},
		{name: "user name", args: []string{"--user", "alice"}, subjects: []string{"alice"}},
		{name: "user name in another source", args: []string{"--source", "vpp", "--user", "alice"}, err: `no user of source vpp has the id, e-mail address or user name "alice"`},
		{name: "unknown", args: []string{"--user", "nobody@school.example"}, err: `--user: unknown user: no user of any source has the id, e-mail address or user name "nobody@school.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(tc.args...)
			if tc.err != "" {
				if err == nil || errors.Is(err, notifierapp.ErrUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			var got []string
			for _, l := range lines(out) {
				var e events.Event
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				got = append(got, e.Subject())
			}
			if strings.Join(got, ",") != strings.Join(tc.subjects, ",") {
				t.Errorf("events of %v, want %v", got, tc.subjects)
			}
			if tc.stderr != "" && !strings.Contains(errOut, tc.stderr) || tc.stderr == "" && strings.Contains(errOut, "matches") {
				t.Errorf("stderr %q, want %q", errOut, tc.stderr)
			}
		})
	}
}

// TestReplayUnknownSource: a source the server does not know is an error
// naming the known ones, for events and for --as-of.
func TestReplayUnknownSource(t *testing.T) {
	run, js := replayCmd(t, nil)
	mailTrail(t, js)
	trail(t, js)
	for _, args := range [][]string{
		{"--source", "nosuch"},
		{"--source", "nosuch", "--as-of", "now"},
		{"--source", "nosuch", "--user", "118"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, _, err := run(args...)
			want := `--source: unknown source "nosuch": known sources are veeam, vpp`
			if err == nil || errors.Is(err, notifierapp.ErrUsage) || err.Error() != want || out != "" {
				t.Fatalf("err %v, stdout %q; want %q", err, out, want)
			}
		})
	}
	if _, _, err := run("--source", "vpp"); err != nil {
		t.Errorf("a known source: %v", err)
	}
}

// TestLoadDaysAndMessages: the notifier's duration variables take days
// and weeks; a bad value is said in words.
func TestLoadDaysAndMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		err  string
		ok   func(notifierapp.Config) bool
	}{
		{name: "days", env: map[string]string{"SLACK_DIGEST_WINDOW": "1d", "RETRY_SCHEDULE": "5s,1d12h,1w"}, ok: func(c notifierapp.Config) bool {
			return c.SlackDigestWindow == 24*time.Hour && len(c.RetrySchedule) == 3 && c.RetrySchedule[1] == 36*time.Hour && c.RetrySchedule[2] == 168*time.Hour
		}},
		{name: "go forms", env: map[string]string{"SLACK_DIGEST_WINDOW": "90s"}, ok: func(c notifierapp.Config) bool { return c.SlackDigestWindow == 90*time.Second }},
		{name: "bool", env: map[string]string{"ALLOW_INSECURE_HTTP": "yes"}, err: `ALLOW_INSECURE_HTTP "yes": want true or false`},
		{name: "int", env: map[string]string{"MAX_ATTEMPTS": "lots"}, err: `MAX_ATTEMPTS "lots": want a whole number`},
		{name: "duration", env: map[string]string{"SLACK_DIGEST_WINDOW": "a minute"}, err: `SLACK_DIGEST_WINDOW "a minute": want a duration such as 90s, 15m, 2h30m, 1d or 2w`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := notifierapp.Load(context.Background(), envconfig.MapLookuper(tc.env))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "strconv") {
					t.Fatalf("Load: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.ok(c) {
				t.Fatalf("Load: %+v, %v", c, err)
			}
		})
	}
}
