package notifierapp_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/pkg/events"
)

// violations keeps the server's permission violations.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) record(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if strings.Contains(msg, "Violation") {
		v.mu.Lock()
		v.seen = append(v.seen, msg)
		v.mu.Unlock()
	}
}
func (v *violations) Noticef(f string, a ...any) { v.record(f, a...) }
func (v *violations) Warnf(f string, a ...any)   { v.record(f, a...) }
func (v *violations) Fatalf(f string, a ...any)  { v.record(f, a...) }
func (v *violations) Errorf(f string, a ...any)  { v.record(f, a...) }
func (v *violations) Debugf(f string, a ...any)  { v.record(f, a...) }
func (v *violations) Tracef(f string, a ...any)  { v.record(f, a...) }

// TestReplayUserPermissions runs the new look-ups (a user by e-mail, the
// known sources, the sinks with dead letters) as the replay user of
// deployments/nats/accounts.conf: they need nothing that user may not do.
// That user may not read rollcall_users, which is why a user is found
// from the stream and the baselines.
func TestReplayUserPermissions(t *testing.T) {
	pw := map[string]string{}
	for user, v := range map[string]string{"poller": "ROLLCALL_POLLER_PASSWORD", "notifier": "ROLLCALL_NOTIFIER_PASSWORD", "replay": "ROLLCALL_REPLAY_PASSWORD", "system": "NATS_SYSTEM_PASSWORD"} {
		b := make([]byte, 12)
		_, _ = crand.Read(b)
		pw[user] = "p" + hex.EncodeToString(b)
		t.Setenv(v, pw[user])
	}
	opts, err := server.ProcessConfigFile("../../../deployments/nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.StoreDir, opts.Host, opts.Port, opts.HTTPPort, opts.NoSigs = t.TempDir(), "127.0.0.1", -1, 0, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &violations{}
	s.SetLogger(v, false, false)
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	as := func(user string) jetstream.JetStream {
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, pw[user]), nats.CustomInboxPrefix("_INBOX."+user))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	mailTrail(t, as("poller")) // bus.Ensure makes the dead-letter stream too
	e, err := events.New(events.Spec{Type: events.TypeRetired, PrevRevision: 1, User: vppPerson("118", "x@school.example", "retired"), Reason: events.ReasonStatus, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := bus.Msg(e)
	body, _ := json.Marshal(notifier.DeadLetter{Sink: "webhook-2", Reason: "gone", Status: 410, Attempts: 1, StreamSeq: 1, EventID: e.ID(), Subject: m.Subject, Headers: m.Header, Data: m.Data})
	dl := nats.NewMsg(bus.DeadLetterPrefix + "webhook-2")
	dl.Data = body
	if _, err := as("notifier").PublishMsg(context.Background(), dl); err != nil {
		t.Fatal(err)
	}

	env := envconfig.MapLookuper(map[string]string{"NATS_URL": s.ClientURL(), "NATS_USER": "replay", "NATS_PASSWORD": pw["replay"]})
	for _, tc := range []struct {
		cmd  string
		args []string
		out  string // stdout holds it
		err  string // the error holds it ("" = none)
	}{
		{cmd: "replay", args: []string{"--user", "person118@school.example", "--format", "text"}, out: "user 120 Person118@School.example  registered → associated"},
		{cmd: "replay", args: []string{"--source", "vpp", "--user", "119"}, out: `"subject":"119"`},
		{cmd: "replay", args: []string{"--user", "nobody"}, err: `no user of any source has the id, e-mail address or user name "nobody"`},
		{cmd: "replay", args: []string{"--source", "nosuch"}, err: `unknown source "nosuch": known sources are vpp`},
		{cmd: "replay", args: []string{"--source", "vpp", "--as-of", "now", "--format", "text"}, out: "120  Person118@School.example  associated"},
		{cmd: "deadletter", args: []string{"list", "--sink", "nosuch"}, err: "sinks with dead letters: webhook-2; configured sinks: console"},
		{cmd: "deadletter", args: []string{"list", "--json"}, out: `"sink":"webhook-2"`},
	} {
		t.Run(tc.cmd+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			var err error
			if tc.cmd == "replay" {
				err = notifierapp.Replay(context.Background(), tc.args, env, &out, &errOut)
			} else {
				err = notifierapp.DeadLetter(context.Background(), tc.args, env, &out, &errOut)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("err %v (want %q)\nstdout %s\nstderr %s", err, tc.err, out.String(), errOut.String())
			}
		})
	}
	v.mu.Lock()
	if len(v.seen) > 0 {
		t.Errorf("permission violations:\n%s", strings.Join(v.seen, "\n"))
	}
	v.mu.Unlock()

	// The control: the replay user may not read the users bucket, and the
	// server says so in its log, where this test looks.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rep := as("replay")
	if kv, err := rep.KeyValue(ctx, bus.UsersBucket); err == nil {
		if _, err := kv.Get(ctx, "vpp.118"); err == nil {
			t.Error("the replay user read rollcall_users")
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		v.mu.Lock()
		n := len(v.seen)
		v.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reading rollcall_users as the replay user logged no violation: this test would not see one")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
