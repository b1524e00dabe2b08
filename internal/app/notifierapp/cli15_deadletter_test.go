package notifierapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/pkg/events"
)

// deadLetters stores n dead letters of sink as the notifier writes them.
func deadLetters(t *testing.T, js jetstream.JetStream, sink string, n int) []events.Event {
	t.Helper()
	ctx := context.Background()
	if err := bus.EnsureDeadLetter(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	var evs []events.Event
	for i := range n {
		u := vppPerson(fmt.Sprint(1000+i), fmt.Sprintf("p%d@school.example", i), "retired")
		e, err := events.New(events.Spec{Type: events.TypeRetired, PrevRevision: 1, User: u, Reason: events.ReasonStatus, Observed: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		m, err := bus.Msg(e)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(notifier.DeadLetter{Sink: sink, Reason: "permanent failure: http status 410", Status: 410, Attempts: 3,
			At: time.Now().UTC(), StreamSeq: uint64(i + 1), EventID: e.ID(), Subject: m.Subject, Headers: m.Header, Data: m.Data})
		dl := nats.NewMsg(bus.DeadLetterPrefix + sink)
		dl.Data = body
		if _, err := js.PublishMsg(ctx, dl); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

func deadLetterCmd(env map[string]string) func(args ...string) (string, string, error) {
	return func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := notifierapp.DeadLetter(context.Background(), args, envconfig.MapLookuper(env), &out, &errOut)
		return out.String(), errOut.String(), err
	}
}

// TestDeadLetterUnknownSink: a --sink that is not configured (redrive) or
// neither configured nor holding dead letters (list) is one error naming
// the sink and the known ones, and nothing is touched.
func TestDeadLetterUnknownSink(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	deadLetters(t, js, "webhook-2", 15)
	deadLetters(t, js, "slack", 1)
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("a dead letter was sent")
	}))
	t.Cleanup(hook.Close)
	env := map[string]string{"NATS_URL": srv.ClientURL(), "WEBHOOK_URL": hook.URL, "ALLOW_INSECURE_HTTP": "true"}
	run := deadLetterCmd(env)
	for _, tc := range []struct {
		name   string
		args   []string
		err    string
		stdout string
	}{
		{name: "redrive of a sink not configured", args: []string{"redrive", "--sink", "webhook-2"},
			err: "--sink webhook-2: no such sink is configured (configured: webhook); its 15 dead letter(s) stay where they are"},
		{name: "redrive of a sink nobody knows", args: []string{"redrive", "--sink", "nosuch"},
			err: "--sink nosuch: no such sink is configured (configured: webhook)"},
		{name: "list of a sink nobody knows", args: []string{"list", "--sink", "nosuch"},
			err: "--sink nosuch: unknown sink (sinks with dead letters: slack, webhook-2; configured sinks: webhook)"},
		{name: "list of a hostile name", args: []string{"list", "--sink", "no\x1b[2Jsuch"},
			err: `--sink "no\x1b[2Jsuch": unknown sink`},
		{name: "list of a sink with dead letters, not configured", args: []string{"list", "--sink", "webhook-2"}, stdout: "15 dead letter(s)"},
		{name: "list of a configured sink without dead letters", args: []string{"list", "--sink", "webhook"}, stdout: "no dead letters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(tc.args...)
			if tc.err != "" {
				if err == nil || errors.Is(err, notifierapp.ErrUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if strings.Contains(errOut, "skipped") || out != "" {
					t.Errorf("more than one error: stdout %q stderr %q", out, errOut)
				}
				return
			}
			if err != nil || !strings.Contains(out, tc.stdout) {
				t.Fatalf("err %v, stdout %q; want %q", err, out, tc.stdout)
			}
		})
	}
	if entries, err := deadletter.List(context.Background(), js, ""); err != nil || len(entries) != 16 {
		t.Fatalf("dead letters after the refusals: %d, %v", len(entries), err)
	}
	// A reader's configuration without any sink: the console is the
	// configured one, and the stream's sinks are known.
	run = deadLetterCmd(map[string]string{"NATS_URL": srv.ClientURL()})
	if _, _, err := run("list", "--sink", "nosuch"); err == nil || !strings.Contains(err.Error(), "sinks with dead letters: slack, webhook-2; configured sinks: console") {
		t.Errorf("list without sinks configured: %v", err)
	}
}

// TestDeadLetterListJSON: list --json prints one object per dead letter.
func TestDeadLetterListJSON(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	evs := deadLetters(t, js, "webhook", 2)
	run := deadLetterCmd(map[string]string{"NATS_URL": srv.ClientURL()})
	out, _, err := run("list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	l := lines(out)
	if len(l) != 2 {
		t.Fatalf("%d lines:\n%s", len(l), out)
	}
	for i, line := range l {
		var got deadletter.JSONEntry
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		var e events.Event
		if err := json.Unmarshal(got.Event, &e); err != nil {
			t.Fatalf("event: %v", err)
		}
		if got.Sink != "webhook" || got.Status != 410 || got.Attempts != 3 || got.StreamSeq != uint64(i+1) || got.EventID != evs[i].ID() || e.ID() != evs[i].ID() ||
			!strings.Contains(got.Reason, "410") {
			t.Errorf("line %d: %+v", i, got)
		}
	}
	if out, _, err := run("list", "--json", "--id", evs[1].ID()); err != nil || len(lines(out)) != 1 || !strings.Contains(out, evs[1].ID()) {
		t.Errorf("--json --id: %v\n%s", err, out)
	}
	if _, _, err := run("redrive", "--json"); !errors.Is(err, notifierapp.ErrUsage) {
		t.Errorf("redrive --json: %v, want a usage error", err)
	}
}
