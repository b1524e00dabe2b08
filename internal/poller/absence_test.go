package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// trail reads the whole event stream as "type subject" lines, in order.
func trail(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.FromHeaders(events.Headers(m.Header), m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, e.Type()+" "+e.Subject())
	}
	return out
}

// TestDeletionDuringSweepRetiresOnlyTheDeletedUser is finding 1 of issue
// 12: a user deleted between two pages of a Veeam sweep shifts every later
// user down a place, one present user is never listed, and the counts
// still match. Without confirmation the run retired that present user (and
// registered it again on the next run).
func TestDeletionDuringSweepRetiresOnlyTheDeletedUser(t *testing.T) {
	js, h := rawEnv(t)
	var users []veeamtest.User
	for i := 1; i <= 10; i++ {
		users = append(users, veeamtest.User{InstanceUID: fmt.Sprintf("u-%04d", i), UserName: fmt.Sprintf("user%d", i), Status: "Enabled", Role: "CompanyOwner"})
	}
	fake := veeamtest.NewServer("api-key", users...)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: srv.URL, Token: "api-key", PageSize: 4, Backoff: fast, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewPoller(reg)
	p := poller.New(js, h, poller.Config{Metrics: m}, poller.SourceConfig{Source: c, Interval: time.Hour})
	if _, err := p.RunOnce(context.Background(), "veeam"); err != nil {
		t.Fatal(err)
	}
	fake.SetBeforePage(func(page int) {
		if page == 2 {
			fake.Remove("u-0001")
		}
	})
	res, err := p.RunOnce(context.Background(), "veeam")
	if err != nil {
		t.Fatal(err)
	}
	fake.SetBeforePage(nil)
	// Page 1 listed u-0001..u-0004 before the deletion; page 2, asked for
	// from offset 4 of a listing one shorter, starts at u-0006: u-0005,
	// present all along, was never listed, and the unique count matched
	// the new total.
	if res.Unconfirmed != 1 {
		t.Errorf("unconfirmed %d, want 1 (u-0005, found by its lookup)", res.Unconfirmed)
	}
	if got := trail(t, js); len(got) != 0 {
		t.Fatalf("after the sweep with a deletion: stream %v, want nothing yet (result %+v)", got, res)
	}
	// The next run lists everyone who is there: u-0001 is gone, nothing
	// else happened.
	if _, err := p.RunOnce(context.Background(), "veeam"); err != nil {
		t.Fatal(err)
	}
	if got := trail(t, js); !slices.Equal(got, []string{"user.retired u-0001"}) {
		t.Fatalf("next run: stream %v, want only u-0001 retired", got)
	}
	if _, err := p.RunOnce(context.Background(), "veeam"); err != nil {
		t.Fatal(err)
	}
	if got := trail(t, js); !slices.Equal(got, []string{"user.retired u-0001"}) {
		t.Fatalf("third run: stream %v", got)
	}
	if n := promtest.ToFloat64(m.AbsenceChecks.WithLabelValues("veeam", "lookup", "present")); n != 1 {
		t.Errorf("absence checks present by lookup = %v, want 1", n)
	}
	if n := promtest.ToFloat64(m.AbsenceChecks.WithLabelValues("veeam", "lookup", "absent")); n < 1 {
		t.Errorf("absence checks absent by lookup = %v, want at least 1", n)
	}
}

// confirmSrc is a source with a directory that can differ between its
// first and second listing of a run, and a lookup that may fail.
type confirmSrc struct {
	fakeSrc
	listings   [][]events.User // served in turn; the last one repeats
	lookups    int
	lookupErr  error
	present    map[string]bool // what a lookup finds
	noLookups  bool
	listFailAt int // 1-based listing that fails (0: none)
	listed     int
}

func (c *confirmSrc) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listed++
	if c.listed == c.listFailAt {
		return sources.Snapshot{}, errors.New("listing failed")
	}
	i := min(c.listed-1, len(c.listings)-1)
	return sources.Snapshot{Users: slices.Clone(c.listings[i]), Complete: true}, nil
}

func (c *confirmSrc) LookupUser(ctx context.Context, id string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups++
	if c.lookupErr != nil {
		return false, c.lookupErr
	}
	return c.present[id], nil
}

// withoutLookup hides LookupUser.
type withoutLookup struct{ c *confirmSrc }

func (w withoutLookup) Name() string { return w.c.Name() }
func (w withoutLookup) Kind() string { return w.c.Kind() }
func (w withoutLookup) Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error) {
	return w.c.Snapshot(ctx, req)
}

func veeamUsers(ids ...int) []events.User {
	var out []events.User
	for _, i := range ids {
		out = append(out, events.User{Source: "v", SourceKind: events.KindVeeam, ID: fmt.Sprintf("u%d", i), Status: "enabled"})
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// Every way an absence is confirmed or refuted (SPEC §1.3).
func TestAbsencesAreConfirmed(t *testing.T) {
	all := span(1, 40)
	without := func(drop ...int) []int {
		return slices.DeleteFunc(slices.Clone(all), func(i int) bool { return slices.Contains(drop, i) })
	}
	tests := []struct {
		name     string
		src      func(c *confirmSrc) poller.Source
		second   []int // the directory of the run's listings after the first
		missing  []int // missing from the run's first listing
		lookup   map[string]bool
		lookErr  error
		failAt   int // listing of the run that fails
		retired  []string
		lookups  int
		listings int // listings in the run
	}{
		{name: "lookup says gone", missing: []int{3}, second: without(3), retired: []string{"u3"}, lookups: 1, listings: 1},
		{name: "lookup finds it", missing: []int{3}, second: all, lookup: map[string]bool{"u3": true}, lookups: 1, listings: 1},
		{name: "lookup fails, second listing lacks it", missing: []int{3}, second: without(3), lookErr: errors.New("503"), retired: []string{"u3"}, lookups: 1, listings: 2},
		{name: "lookup fails, second listing has it", missing: []int{3}, second: all, lookErr: errors.New("503"), lookups: 1, listings: 2},
		{name: "lookup and second listing fail", missing: []int{3}, second: without(3), lookErr: errors.New("503"), failAt: 2, lookups: 1, listings: 2},
		{name: "no lookup, second listing lacks it", src: func(c *confirmSrc) poller.Source { return withoutLookup{c} }, missing: []int{3}, second: without(3), retired: []string{"u3"}, listings: 2},
		{name: "many missing: second listing, no lookups", missing: span(1, 5), second: without(1, 2, 3), retired: []string{"u1", "u2", "u3"}, listings: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, h := rawEnv(t)
			c := &confirmSrc{fakeSrc: fakeSrc{name: "v", kind: events.KindVeeam}, listings: [][]events.User{veeamUsers(all...)}, present: tt.lookup}
			var src poller.Source = c
			if tt.src != nil {
				src = tt.src(c)
			}
			// A guard minimum of 3: five missing users are "many".
			p := poller.New(js, h, poller.Config{Guard: poller.Guard{MinRemovals: 3, MaxRatio: 0.5}}, poller.SourceConfig{Source: src, Interval: time.Hour})
			if _, err := p.RunOnce(context.Background(), "v"); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			c.listings = [][]events.User{veeamUsers(without(tt.missing...)...), veeamUsers(tt.second...)}
			c.listed, c.lookups, c.lookupErr = 0, 0, tt.lookErr
			if tt.failAt > 0 {
				c.listFailAt = tt.failAt
			}
			c.mu.Unlock()
			res, err := p.RunOnce(context.Background(), "v")
			if err != nil {
				t.Fatal(err)
			}
			var retired []string
			for _, l := range trail(t, js) {
				if id, ok := strings.CutPrefix(l, events.TypeRetired+" "); ok {
					retired = append(retired, id)
				}
			}
			slices.Sort(retired)
			if !slices.Equal(retired, tt.retired) {
				t.Errorf("retired %v, want %v", retired, tt.retired)
			}
			if c.lookups != tt.lookups || c.listed != tt.listings {
				t.Errorf("%d lookups and %d listings, want %d and %d", c.lookups, c.listed, tt.lookups, tt.listings)
			}
			if want := tt.listings == 2; res.Relisted != want {
				t.Errorf("Result.Relisted %v, want %v (listings %d)", res.Relisted, want, tt.listings)
			}
			if want := len(tt.missing) - len(tt.retired); res.Unconfirmed != want {
				t.Errorf("unconfirmed %d, want %d", res.Unconfirmed, want)
			}
			// A user kept is still present in the KV, with its old state.
			for _, i := range tt.missing {
				id := fmt.Sprintf("u%d", i)
				e, err := h.Users.Get(context.Background(), events.StateKey("v", id))
				if err != nil {
					t.Fatal(err)
				}
				var r state.Record
				_ = json.Unmarshal(e.Value(), &r)
				if want := !slices.Contains(tt.retired, id); want != (r.User.Status != events.StatusRemoved) {
					t.Errorf("%s has status %q in the KV", id, r.User.Status)
				}
			}
		})
	}
}

// TestDropToOnlyRetiredUsersIsHeld is finding 3 of issue 12: a full VPP
// sync lists retired users, so a listing that lost every active user still
// has users. With the ratio raised to 1 only the drop-to-empty rule can
// hold it, and it must count such a listing as empty.
func TestDropToOnlyRetiredUsersIsHeld(t *testing.T) {
	js, h := rawEnv(t)
	src := &fakeSrc{name: "v", kind: events.KindVPP, complete: true}
	for i := range 5 {
		src.users = append(src.users, vu(i, "retired"))
	}
	for i := 5; i < 25; i++ {
		src.users = append(src.users, vu(i, "associated"))
	}
	p := poller.New(js, h, poller.Config{Guard: poller.Guard{MinRemovals: 10, MaxRatio: 1}}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.users = src.users[:5] // only the retired users are listed
	src.mu.Unlock()
	res, err := p.RunOnce(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if res.Held != 20 || len(trail(t, js)) != 0 {
		t.Fatalf("a drop to only retired users was not held: held %d, stream %v", res.Held, trail(t, js))
	}
	if h := p.Health()["v"]; h.RemovalsHeld != 20 {
		t.Fatalf("health %+v", h)
	}
}

// TestForeignWriteDuringRunIsNoticed is finding 2 of issue 12: another
// writer changes a user's key (here: marks it removed) and the source's
// bookkeeping while a run is under way. The run's commit then fails the
// bookkeeping's compare-and-set; the poller must not keep trusting its
// in-memory index, or the user's return is never published and the KV
// stays "removed" until a restart.
func TestForeignWriteDuringRunIsNoticed(t *testing.T) {
	for _, bumpSource := range []bool{true, false} {
		t.Run(fmt.Sprintf("source state moved %v", bumpSource), func(t *testing.T) {
			js, h := rawEnv(t)
			ctx := context.Background()
			src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(span(1, 5)...)}
			p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
			if _, err := p.RunOnce(ctx, "v"); err != nil {
				t.Fatal(err)
			}
			src.users[0].Role = "CompanyAdministrator" // a change, so the run commits
			src.hook = func() error {
				src.hook = nil
				key := events.StateKey("v", "u3")
				e, err := h.Users.Get(ctx, key)
				if err != nil {
					return err
				}
				var r state.Record
				if err := json.Unmarshal(e.Value(), &r); err != nil {
					return err
				}
				r.User.Status = events.StatusRemoved
				r.Fingerprint = r.User.Fingerprint()
				b, _ := json.Marshal(r)
				if _, err := h.Users.Update(ctx, key, b, e.Revision()); err != nil {
					return err
				}
				if bumpSource {
					st, rev, err := state.NewSources(h.Sources).Get(ctx, "v")
					if err != nil {
						return err
					}
					st.LastCompleteSize++
					return state.NewSources(h.Sources).Put(ctx, "v", st, rev)
				}
				return nil
			}
			_, err := p.RunOnce(ctx, "v")
			if bumpSource && !errors.Is(err, state.ErrConflict) {
				t.Fatalf("run with a foreign bookkeeping write: %v, want ErrConflict", err)
			}
			// Later runs must see u3 as removed in the KV and present in
			// the directory: its return is an event.
			for range 2 {
				if _, err := p.RunOnce(ctx, "v"); err != nil {
					t.Fatal(err)
				}
			}
			if got := trail(t, js); !slices.Contains(got, events.TypeRegistered+" u3") {
				t.Fatalf("u3's return was never published: %v", got)
			}
			e, err := h.Users.Get(ctx, events.StateKey("v", "u3"))
			if err != nil {
				t.Fatal(err)
			}
			var r state.Record
			_ = json.Unmarshal(e.Value(), &r)
			if r.User.Status != "enabled" {
				t.Fatalf("u3 stays %q in the KV", r.User.Status)
			}
		})
	}
}

// TestOversizedRecordsNeverStopASource is finding 6 of issue 12: a
// 1,500-character id made a 4.5 kB subject and the server closed the
// connection (both sources failed on every run); a 2 MB user name made
// every publish fail with "maximum payload exceeded". Now the long id is
// hashed in the subject, a large raw record is cut, and a user that still
// cannot be carried is reported while everyone else is published.
func TestOversizedRecordsNeverStopASource(t *testing.T) {
	ctx := context.Background()
	url := natstest.Start(t)
	nc, js := natstest.Connect(t, url)
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeSrc{name: "a", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2)}
	b := &fakeSrc{name: "b", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2)}
	for _, s := range []*fakeSrc{a, b} {
		for i := range s.users {
			s.users[i].Source = s.name
		}
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewPoller(reg)
	p := poller.New(js, h, poller.Config{MaxPayload: int(nc.MaxPayload()), Metrics: m},
		poller.SourceConfig{Source: a, Interval: time.Hour}, poller.SourceConfig{Source: b, Interval: time.Hour})
	for _, s := range []string{"a", "b"} {
		if _, err := p.RunOnce(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// 1,500 bytes whose reversible encoding is 4.5 kB.
	longID := strings.Repeat("é.", 500)
	hugeName := strings.Repeat("n", 2<<20)
	bigRaw := `{"note":"` + strings.Repeat("r", 300<<10) + `"}`
	a.users = append(a.users,
		events.User{Source: "a", SourceKind: events.KindVeeam, ID: longID, Status: "enabled"},
		events.User{Source: "a", SourceKind: events.KindVeeam, ID: "huge", UserName: hugeName, Status: "enabled"},
		events.User{Source: "a", SourceKind: events.KindVeeam, ID: "bigraw", Status: "enabled", Raw: json.RawMessage(bigRaw)},
		events.User{Source: "a", SourceKind: events.KindVeeam, ID: "plain", Status: "enabled"},
	)
	res, err := p.RunOnce(ctx, "a")
	if err != nil {
		t.Fatalf("a run with oversized records failed: %v", err)
	}
	if res.Uncarried != 1 {
		t.Fatalf("uncarried %d, want 1 (the 2 MB user name): %+v", res.Uncarried, res)
	}
	got := trail(t, js)
	for _, want := range []string{"user.registered " + longID, "user.registered bigraw", "user.registered plain"} {
		if !slices.Contains(got, want) {
			t.Errorf("stream lacks %.60q", want)
		}
	}
	if slices.Contains(got, "user.registered huge") {
		t.Error("the uncarriable user was published")
	}
	// The long id's subject is hashed; the event keeps the whole id.
	s, _ := js.Stream(ctx, bus.EventsStream)
	msg, err := s.GetLastMsgForSubject(ctx, events.Subject("a", longID, events.TypeRegistered))
	if err != nil {
		t.Fatalf("no message on the hashed subject: %v", err)
	}
	if len(msg.Subject) > 128 || len(msg.Header.Get("ce-subject")) < len(longID) {
		t.Fatalf("subject %.80q… (%d bytes), ce-subject %d bytes", msg.Subject, len(msg.Subject), len(msg.Header.Get("ce-subject")))
	}
	// The big raw record is carried cut, with the marker.
	bm, err := s.GetLastMsgForSubject(ctx, events.Subject("a", "bigraw", events.TypeRegistered))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(bm.Data), events.RawCutKey) || len(bm.Data) > 2*events.DefaultMaxRawBytes {
		t.Fatalf("big raw not cut: %d bytes", len(bm.Data))
	}
	// Reported: health (readiness degraded), metric.
	if h := p.Health()["a"]; h.Uncarried != 1 {
		t.Fatalf("health %+v", h)
	}
	if v := promtest.ToFloat64(m.RecordsUncarried.WithLabelValues("a")); v != 1 {
		t.Fatalf("rollcall_source_records_uncarried = %v", v)
	}
	// The connection survived and the other source goes on.
	if nc.Status() != nats.CONNECTED {
		t.Fatalf("connection %v", nc.Status())
	}
	b.users[0].Role = "CompanyAdministrator"
	if res, err := p.RunOnce(ctx, "b"); err != nil || res.Events != 1 {
		t.Fatalf("other source after the oversized records: %+v %v", res, err)
	}
	// Runs go on: the long-id user is known now (no new event); the huge
	// one is tried and reported again.
	res, err = p.RunOnce(ctx, "a")
	if err != nil || res.Events != 0 || res.Uncarried != 1 {
		t.Fatalf("next run: %+v %v", res, err)
	}
	// Once the source shrinks the record, it is carried.
	a.users[3].UserName = "normal"
	if res, err := p.RunOnce(ctx, "a"); err != nil || res.Events != 1 || res.Uncarried != 0 {
		t.Fatalf("after the record shrank: %+v %v", res, err)
	}
	if h := p.Health()["a"]; h.Uncarried != 0 {
		t.Fatalf("health still reports uncarried users: %+v", h)
	}
}

// TestRunAfterAFailedStateLoad: found by the randomized simulation. A run
// whose index check failed (NATS restarting) kept the source's lock, and
// every later run of that source waited for it for ever.
func TestRunAfterAFailedStateLoad(t *testing.T) {
	defer func(d time.Duration) { state.StallTimeout = d }(state.StallTimeout)
	state.StallTimeout = 300 * time.Millisecond
	ctx := context.Background()
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	start := func() *server.Server {
		s, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{StoreDir: dir, Listen: addr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	srv := start()
	_, js := natstest.ConnectURL(t, srv.ClientURL(), natstest.Reconnecting...)
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2)}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = p.RunOnce(rctx, "v")
	cancel()
	if err == nil {
		t.Fatal("a run with NATS down succeeded")
	}
	srv = start()
	t.Cleanup(srv.Shutdown)
	src.mu.Lock()
	src.users[0].Role = "CompanyOwner"
	src.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		testutil.CheckFor(t, 10*time.Second, "a run after NATS came back", func() error {
			_, err := p.RunOnce(ctx, "v")
			return err
		})
		done <- nil
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the source's runs are stuck after a failed state load")
	}
}
