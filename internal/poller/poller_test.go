package poller_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

const stoken = "dGVzdC1zdG9rZW4="

var fast = httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}

type env struct {
	js    jetstream.JetStream
	h     *bus.Handles
	vpp   *vpptest.Server
	veeam *veeamtest.Server
	p     *poller.Poller
}

func setup(t *testing.T, cfg poller.Config) *env {
	t.Helper()
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, h: h, vpp: vpptest.NewServer(stoken, vpptest.FixtureUsers()...), veeam: veeamtest.NewServer("api-key", veeamtest.FixtureUsers()...)}
	e.vpp.SetBatchSize(2)
	vs := httptest.NewServer(e.vpp)
	t.Cleanup(vs.Close)
	ve := httptest.NewServer(e.veeam)
	t.Cleanup(ve.Close)
	vc, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: vs.URL + "/mdm", SToken: stoken, Backoff: fast, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	wc, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: ve.URL, Token: "api-key", PageSize: 2, Backoff: fast, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.p = poller.New(js, h, cfg,
		poller.SourceConfig{Source: vc, Interval: time.Hour, FullSyncInterval: time.Hour},
		poller.SourceConfig{Source: wc, Interval: time.Hour})
	return e
}

func (e *env) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// kvSeq is the last sequence of a bucket's stream: it moves on every write.
func (e *env) kvSeq(t *testing.T, bucket string) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func (e *env) run(t *testing.T, source string) poller.Result {
	t.Helper()
	res, err := e.p.RunOnce(context.Background(), source)
	if err != nil {
		t.Fatalf("run %s: %v", source, err)
	}
	return res
}

func (e *env) streamTypes(t *testing.T) []string {
	t.Helper()
	s, _ := e.js.Stream(context.Background(), bus.EventsStream)
	info, _ := s.Info(context.Background())
	var out []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Header.Get("ce-type")+"/"+m.Header.Get("ce-subject"))
	}
	return out
}

func TestFirstSnapshotSeedsSilently(t *testing.T) {
	e := setup(t, poller.Config{})
	for _, src := range []string{"vpp", "veeam"} {
		res := e.run(t, src)
		if !res.Seeded || res.Events != 0 || res.Writes == 0 {
			t.Fatalf("%s: first run %+v, want seeded, no events, writes", src, res)
		}
	}
	if n := e.streamMsgs(t); n != 0 {
		t.Fatalf("first snapshots published %d events", n)
	}
	users, err := state.NewUsers(e.h.Users, "vpp").Load(context.Background())
	if err != nil || len(users) != 4 {
		t.Fatalf("vpp state has %d users (%v), want 4", len(users), err)
	}
	// The baseline keeps what the silent snapshot saw.
	info, err := e.h.Baselines.GetInfo(context.Background(), "veeam")
	if err != nil || info.Size == 0 {
		t.Fatalf("veeam baseline: %v %v", info, err)
	}
	// Second run with no change: no events, no writes at all.
	usersSeq, srcSeq := e.kvSeq(t, bus.UsersBucket), e.kvSeq(t, bus.SourcesBucket)
	if res := e.run(t, "veeam"); res.Events != 0 || res.Writes != 0 {
		t.Fatalf("unchanged run %+v", res)
	}
	if e.kvSeq(t, bus.UsersBucket) != usersSeq || e.kvSeq(t, bus.SourcesBucket) != srcSeq {
		t.Fatal("a run that saw no change wrote to NATS")
	}
}

func TestEmitInitial(t *testing.T) {
	e := setup(t, poller.Config{EmitInitial: true})
	res := e.run(t, "vpp")
	// Fixture: users 1 and 2 Associated (registered+associated each), 3 and 4 Registered.
	if res.Events != 6 || res.Stored != 6 {
		t.Fatalf("run %+v, want 6 events stored", res)
	}
	// Per user, each transition in order (users' events may interleave).
	want := map[string][]string{"1": {"user.registered", "user.associated"}, "2": {"user.registered", "user.associated"}, "3": {"user.registered"}, "4": {"user.registered"}}
	got := map[string][]string{}
	for _, te := range e.streamTypes(t) {
		typ, subject, _ := strings.Cut(te, "/")
		got[subject] = append(got[subject], typ)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream per user %v, want %v", got, want)
	}
}

// SPEC §1.3: a run whose second page fails publishes nothing and writes
// nothing, and above all retires nobody.
func TestFailedSecondPageWritesNothing(t *testing.T) {
	tests := []struct {
		name   string
		source string
		change func(e *env)
		fault  func(e *env)
	}{
		{
			name:   "vpp batch 2 answers an error",
			source: "vpp",
			change: func(e *env) { changeVPP(e, 3) },
			fault:  func(e *env) { e.vpp.InjectFault(vpptest.Fault{Batch: 2, ErrorNumber: vpp.ErrInvalidArgument}) },
		},
		{
			name:   "vpp batch 2 truncated",
			source: "vpp",
			change: func(e *env) { changeVPP(e, 3) },
			fault:  func(e *env) { e.vpp.InjectFault(vpptest.Fault{Batch: 2, Truncate: true}) },
		},
		{
			name:   "veeam page 2 fails after retries",
			source: "veeam",
			change: func(e *env) {
				u := veeamtest.FixtureUsers()[0]
				u.Role = "CompanyAdministrator"
				e.veeam.Put(u)
				e.veeam.Remove(veeamtest.FixtureUsers()[1].InstanceUID)
				e.veeam.Put(veeamtest.User{InstanceUID: "ffff0000-0000-4000-8000-000000000001", UserName: "Zed", Status: "Enabled", Role: "CompanyOwner"})
			},
			fault: func(e *env) { e.veeam.InjectFault(veeamtest.Fault{Page: 2, Status: 520, Times: 2}) },
		},
		{
			name:   "veeam page 2 refused",
			source: "veeam",
			change: func(e *env) {
				e.veeam.Remove(veeamtest.FixtureUsers()[2].InstanceUID)
				e.veeam.Put(veeamtest.User{InstanceUID: "ffff0000-0000-4000-8000-000000000001", UserName: "Zed", Status: "Enabled", Role: "CompanyOwner"})
			},
			fault: func(e *env) { e.veeam.InjectFault(veeamtest.Fault{Page: 2, Status: 400}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t, poller.Config{})
			e.run(t, tt.source) // seed
			tt.change(e)
			tt.fault(e)
			msgs, usersSeq, srcSeq := e.streamMsgs(t), e.kvSeq(t, bus.UsersBucket), e.kvSeq(t, bus.SourcesBucket)
			before, _ := state.NewUsers(e.h.Users, tt.source).Load(context.Background())
			if _, err := e.p.RunOnce(context.Background(), tt.source); err == nil {
				t.Fatal("run with a failing page succeeded")
			}
			if got := e.streamMsgs(t); got != msgs {
				t.Fatalf("failed run published %d events", got-msgs)
			}
			if e.kvSeq(t, bus.UsersBucket) != usersSeq || e.kvSeq(t, bus.SourcesBucket) != srcSeq {
				t.Fatal("failed run wrote state")
			}
			after, _ := state.NewUsers(e.h.Users, tt.source).Load(context.Background())
			for id, p := range before {
				if a := after[id]; a.Revision != p.Revision || a.User.Fingerprint() != p.User.Fingerprint() {
					t.Fatalf("user %s changed from %+v to %+v", id, p, after[id])
				}
			}
			// Once the source answers again the change goes through.
			res := e.run(t, tt.source)
			if res.Events == 0 || e.streamMsgs(t) == msgs {
				t.Fatalf("recovered run %+v published nothing", res)
			}
		})
	}
}

// A crash after publishing but before the KV commit: the rerun publishes
// the same ids and JetStream drops them, so nothing is doubled.
// changeVPP moves n fixture users on by one status, enough for an
// incremental listing to span two batches of two.
func changeVPP(e *env, n int) {
	next := map[string]string{vpptest.StatusRegistered: vpptest.StatusAssociated, vpptest.StatusAssociated: vpptest.StatusRetired}
	for id := int64(1); id <= int64(n); id++ {
		u, _ := e.vpp.Get(id)
		u.Status = next[u.Status]
		e.vpp.Put(u)
	}
}

func TestRerunAfterCrashPublishesNoDuplicates(t *testing.T) {
	m := metrics.NewPoller(prometheus.NewRegistry())
	e := setup(t, poller.Config{Metrics: m})
	ctx := context.Background()
	e.run(t, "veeam")
	u := veeamtest.FixtureUsers()[0]
	u.Role = "CompanyAdministrator"
	e.veeam.Put(u)
	e.veeam.Remove(veeamtest.FixtureUsers()[1].InstanceUID)

	// Do what a run does up to the crash: snapshot, diff, publish.
	prev, err := state.NewUsers(e.h.Users, "veeam").Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ve := httptest.NewServer(e.veeam)
	defer ve.Close()
	wc, _ := veeam.New(veeam.Config{Name: "veeam", BaseURL: ve.URL, Token: "api-key", Backoff: fast})
	snap, err := wc.Snapshot(ctx, sources.Request{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := diff.Compute(diff.Input{Source: "veeam", Kind: events.KindVeeam, Previous: prev, Snapshot: snap.Users, Complete: true, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, e.js, d.Events); err != nil {
		t.Fatal(err)
	}
	if len(d.Events) != 2 || e.streamMsgs(t) != 2 {
		t.Fatalf("crashed run published %d events, stream has %d", len(d.Events), e.streamMsgs(t))
	}

	res := e.run(t, "veeam")
	if res.Events != 2 || res.Duplicates != 2 || res.Stored != 0 {
		t.Fatalf("rerun %+v, want the same 2 events dropped as duplicates", res)
	}
	if dup, pub := promtest.ToFloat64(m.EventsDuplicated.WithLabelValues("veeam")), promtest.CollectAndCount(m.EventsPublished); dup != 2 || pub != 0 {
		t.Fatalf("metrics: %v duplicates, %d published series; want 2 and none", dup, pub)
	}
	if n := e.streamMsgs(t); n != 2 {
		t.Fatalf("stream holds %d events, want 2", n)
	}
	if res := e.run(t, "veeam"); res.Events != 0 {
		t.Fatalf("third run %+v re-emitted events", res)
	}
}

// Between full syncs VPP lists only changed users: a user missing from such
// a listing is not retired, and the cursor moves only after a good run.
func TestIncrementalRunRetiresNobody(t *testing.T) {
	e := setup(t, poller.Config{})
	e.run(t, "vpp")
	e.vpp.Remove(4)
	u, _ := e.vpp.Get(3)
	u.Status = vpptest.StatusAssociated
	e.vpp.Put(u)
	res := e.run(t, "vpp")
	if res.Complete {
		t.Fatal("second run within the full-sync interval was a full sync")
	}
	if got := e.streamTypes(t); len(got) != 1 || got[0] != "user.associated/3" {
		t.Fatalf("incremental run published %v, want only user.associated/3", got)
	}
}

func TestRunOnceUnknownSource(t *testing.T) {
	e := setup(t, poller.Config{})
	if _, err := e.p.RunOnce(context.Background(), "nope"); err == nil {
		t.Fatal("want error")
	}
}

// VPP alternates incremental runs with a full sync (includeRetired, and
// removals visible) every FullSyncInterval.
func TestFullSyncEveryInterval(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	e := setup(t, poller.Config{Now: func() time.Time { return now }})
	if res := e.run(t, "vpp"); !res.Complete {
		t.Fatal("first run was not a full sync")
	}
	now = now.Add(30 * time.Minute)
	if res := e.run(t, "vpp"); res.Complete {
		t.Fatal("run within the interval was a full sync")
	}
	e.vpp.Remove(4)
	now = now.Add(31 * time.Minute)
	res := e.run(t, "vpp")
	if !res.Complete {
		t.Fatal("run after the interval was not a full sync")
	}
	if got := e.streamTypes(t); len(got) != 1 || got[0] != "user.retired/4" {
		t.Fatalf("full sync published %v, want the removal of user 4", got)
	}
	now = now.Add(time.Minute)
	if res := e.run(t, "vpp"); res.Complete {
		t.Fatal("the full sync's time was not recorded")
	}
}
