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

func user(id, role string) events.User {
	return events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: id, UserName: id, Status: "enabled", Role: role}
}

// trail seeds a baseline and publishes two runs of changes, as the poller
// would, and returns the time between the two runs.
func trail(t *testing.T, js jetstream.JetStream) time.Time {
	t.Helper()
	ctx := context.Background()
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	base := []events.User{user("alice", "CompanyOwner"), user("bob", "CompanyUser")}
	b, _ := json.Marshal(base)
	if _, err := h.Baselines.PutBytes(ctx, "veeam", b); err != nil {
		t.Fatal(err)
	}
	prev := map[string]diff.Prev{"alice": {User: base[0], Revision: 1}, "bob": {User: base[1], Revision: 2}}
	time.Sleep(20 * time.Millisecond) // events strictly after the baseline's time
	r1, err := diff.Compute(diff.Input{Source: "veeam", Kind: events.KindVeeam, Previous: prev, Complete: true, Observed: time.Now(),
		Snapshot: []events.User{user("alice", "CompanyAdministrator"), user("bob", "CompanyUser"), user("carol", "CompanyUser")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, js, r1.Events); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	prev["alice"] = diff.Prev{User: user("alice", "CompanyAdministrator"), Revision: 3}
	prev["carol"] = diff.Prev{User: user("carol", "CompanyUser"), Revision: 4}
	r2, err := diff.Compute(diff.Input{Source: "veeam", Kind: events.KindVeeam, Previous: prev, Complete: true, Observed: time.Now(),
		Snapshot: []events.User{user("alice", "CompanyAdministrator"), user("carol", "CompanyUser")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, js, r2.Events); err != nil {
		t.Fatal(err)
	}
	return mid
}

func lines(s string) []string {
	return strings.Split(strings.TrimSpace(s), "\n")
}

func TestReplayCommand(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	mid := trail(t, js)
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": srv.ClientURL()})
	ctx := context.Background()
	run := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := notifierapp.Replay(ctx, args, env, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	t.Run("whole trail", func(t *testing.T) {
		out, _, err := run()
		if err != nil || len(lines(out)) != 3 {
			t.Fatalf("replay: %v\n%s", err, out)
		}
	})
	t.Run("one user's history", func(t *testing.T) {
		out, _, err := run("--source", "veeam", "--user", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if l := lines(out); len(l) != 1 || !strings.Contains(l[0], `"user.roleChanged"`) {
			t.Fatalf("alice's history: %q", out)
		}
	})
	t.Run("by type", func(t *testing.T) {
		out, _, err := run("--type", "user.retired")
		if err != nil {
			t.Fatal(err)
		}
		if l := lines(out); len(l) != 1 || !strings.Contains(l[0], `"subject":"bob"`) {
			t.Fatalf("retirements: %q", out)
		}
	})
	t.Run("directory as of the middle", func(t *testing.T) {
		out, errOut, err := run("--source", "veeam", "--as-of", mid.UTC().Format(time.RFC3339Nano))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, l := range lines(out) {
			var u events.User
			if err := json.Unmarshal([]byte(l), &u); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, u.ID+"="+u.Role)
		}
		if strings.Join(ids, ",") != "alice=CompanyAdministrator,bob=CompanyUser,carol=CompanyUser" {
			t.Fatalf("directory as of the middle: %v (%s)", ids, errOut)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{{"--since", "yesterday"}, {"--type", "user.exploded"}, {"--as-of", "2026-01-01T00:00:00Z"}, {"--to", "pigeon"}} {
			if _, _, err := run(args...); !errors.Is(err, notifierapp.ErrUsage) {
				t.Errorf("%v: %v, want a usage error", args, err)
			}
		}
	})
}

func TestDeadLetterCommandWithNothingDeadLettered(t *testing.T) {
	srv := natstest.Start(t)
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": srv.ClientURL()})
	var out, errOut bytes.Buffer
	if err := notifierapp.DeadLetter(context.Background(), []string{"list"}, env, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no dead letters") {
		t.Fatalf("list: %q", out.String())
	}
	if err := notifierapp.DeadLetter(context.Background(), []string{"bury"}, env, &out, &errOut); !errors.Is(err, notifierapp.ErrUsage) {
		t.Fatalf("unknown subcommand: %v", err)
	}
}
