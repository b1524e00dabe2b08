package poller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/pkg/events"
)

type fakeSrc struct {
	mu       sync.Mutex
	name     string
	kind     string
	users    []events.User
	complete bool
	hook     func() error
}

func (f *fakeSrc) Name() string { return f.name }
func (f *fakeSrc) Kind() string { return f.kind }
func (f *fakeSrc) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hook != nil {
		if err := f.hook(); err != nil {
			return sources.Snapshot{}, err
		}
	}
	us := append([]events.User(nil), f.users...)
	return sources.Snapshot{Users: us, Complete: f.complete || req.Full, Cursor: "c"}, nil
}

func rawEnv(t *testing.T) (jetstream.JetStream, *bus.Handles) {
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return js, h
}

func vu(i int, status string) events.User {
	return events.User{Source: "v", SourceKind: "vpp", ID: fmt.Sprint(i), Status: status}
}

// A crash after users.Apply but before the source-state Put on the seed run
// leaves Seeded=false; the next run is treated as the seed again and swallows
// real changes to users already written.
func TestRegressionSeedCrashSwallowsChange(t *testing.T) {
	js, h := rawEnv(t)
	src := &fakeSrc{name: "v", kind: "vpp", complete: true}
	for i := range 5 {
		src.users = append(src.users, vu(i, "registered"))
	}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	// Simulate the crash: the users were written, the source state was not.
	if err := h.Sources.Delete(context.Background(), "v.state"); err != nil {
		t.Fatal(err)
	}
	src.users[0].Status = "associated"
	res, err := p.RunOnce(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if res.Events == 0 {
		t.Fatalf("user 0 registered→associated was written to KV with no event: %+v", res)
	}
}

// VPP retired users count in the guard's denominator but can never be
// "removed", so a broken listing that loses every active user passes.
func TestRegressionGuardDenominatorIncludesRetired(t *testing.T) {
	js, h := rawEnv(t)
	src := &fakeSrc{name: "v", kind: "vpp", complete: true}
	for i := range 85 {
		src.users = append(src.users, vu(i, "retired"))
	}
	for i := 85; i < 100; i++ {
		src.users = append(src.users, vu(i, "associated"))
	}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	src.users = src.users[:85] // every active user vanished
	res, err := p.RunOnce(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if res.Held == 0 {
		t.Fatalf("15 of 15 active users retired by absence, guard not tripped: %+v", res)
	}
}

// Held removals are persisted in KV but a restarted poller reports none
// (health, metric, readiness) until the next complete snapshot.
func TestRegressionHeldNotReportedAfterRestart(t *testing.T) {
	js, h := rawEnv(t)
	src := &fakeSrc{name: "v", kind: "vpp"}
	for i := range 30 {
		src.users = append(src.users, vu(i, "associated"))
	}
	sc := poller.SourceConfig{Source: src, Interval: time.Hour, FullSyncInterval: 24 * time.Hour}
	p := poller.New(js, h, poller.Config{}, sc)
	if _, err := p.RunOnce(context.Background(), "v"); err != nil { // seed (full)
		t.Fatal(err)
	}
	// force a full sync with 15 missing
	src.complete = true
	src.users = src.users[:15]
	res, err := p.RunOnce(context.Background(), "v")
	if err != nil || res.Held != 15 {
		t.Fatalf("%v %+v", err, res)
	}
	src.complete = false
	p2 := poller.New(js, h, poller.Config{}, sc) // restart
	if _, err := p2.RunOnce(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	if got := p2.Health()["v"].RemovalsHeld; got != 15 {
		t.Fatalf("after restart RemovalsHeld=%d, KV still holds 15", got)
	}
}

type stopErr struct{}

func (stopErr) Error() string     { return "token refused" }
func (stopErr) StopsSource() bool { return true }

// The operator rotates the token file while a run is in flight; the run then
// fails with a refused credential. The digest is taken after the failure, so
// the change is never noticed and the source stays stopped forever.
func TestRegressionStoppedMissesRotationDuringRun(t *testing.T) {
	js, h := rawEnv(t)
	f := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(f, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &fakeSrc{name: "v", kind: "vpp", complete: true, hook: func() error {
		os.WriteFile(f, []byte("new"), 0o600) // rotated during the run
		return stopErr{}
	}}
	good := &fakeSrc{name: "v", kind: "vpp", complete: true}
	reloaded := make(chan struct{}, 1)
	sc := poller.SourceConfig{Source: src, Interval: time.Hour, Watch: []string{f},
		Reload: func() (poller.Source, error) {
			select {
			case reloaded <- struct{}{}:
			default:
			}
			return good, nil
		}}
	p := poller.New(js, h, poller.Config{WatchEvery: 20 * time.Millisecond}, sc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-reloaded:
	case <-time.After(2 * time.Second):
		t.Fatalf("token file was rotated but the source never resumed: %+v", p.Health()["v"])
	}
}
