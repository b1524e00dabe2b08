package vpp2_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

const testSToken = "eyJ0b2tlbiI6InRlc3QtaW5uZXItdG9rZW4tMTIzIiwiZXhwRGF0ZSI6IjIwOTktMTItMzFUMDA6MDA6MDAtMDgwMCIsIm9yZ05hbWUiOiJUZXN0IE9yZyJ9"

var fast = httpx.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}

// rig is a vpp2 source over a fake, polled by the real poller on a real
// embedded NATS server.
type rig struct {
	fake *vpp2test.Server
	dir  *vpptest.Server
	c    *vpp2.Client
	p    *poller.Poller
	js   jetstream.JetStream
}

func newRig(t *testing.T, fullEvery time.Duration, pageSize int, users ...vpptest.User) *rig {
	t.Helper()
	fake := vpp2test.NewServer(testSToken, vpptest.NewServer(testSToken, users...))
	fake.SetPageSize(pageSize)
	fake.SetMaxRequestPerSecond(1000)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: srv.URL + "/mdm/v2", SToken: testSToken,
		Backoff: fast, MaxAttempts: 3, MaxRequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: c, Interval: time.Hour, FullSyncInterval: fullEvery})
	return &rig{fake: fake, dir: fake.Directory(), c: c, p: p, js: js}
}

func (r *rig) run(t *testing.T) poller.Result {
	t.Helper()
	res, err := r.p.RunOnce(context.Background(), "school")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// trail is the event stream as "type subject status previous-status"
// lines, in order.
func (r *rig) trail(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, e := range natstest.Events(t, r.js) {
		d, err := events.DecodeData(e)
		if err != nil {
			t.Fatal(err)
		}
		prev := "-"
		if d.Previous != nil {
			prev = d.Previous.Status
		}
		if strings.Contains(string(d.User.Raw), "inviteCode") {
			t.Errorf("event %s carries the invite code in raw: %s", e.ID(), d.User.Raw)
		}
		out = append(out, fmt.Sprintf("%s %s %s %s", e.Type(), e.Subject(), d.User.Status, prev))
	}
	return out
}

func vu(id int64, key, status string) vpptest.User {
	u := vpptest.User{UserID: id, ClientUserIDStr: key, Email: key + "@school.example", Status: status}
	switch status {
	case vpptest.StatusRegistered:
		u.InviteCode = fmt.Sprintf("%032x", id)
	case vpptest.StatusAssociated, vpptest.StatusRetired:
		u.ItsIDHash = fmt.Sprintf("hash%d=", id)
	}
	return u
}

// TestTransitions drives every transition of SPEC §1.4 through the real
// poller, with the second run a full listing and an incremental one.
func TestTransitions(t *testing.T) {
	base := []vpptest.User{vu(1, "alice", vpptest.StatusAssociated), vu(2, "bob", vpptest.StatusRegistered)}
	for _, tc := range []struct {
		name     string
		extra    []vpptest.User // in the directory before the seed
		change   func(d *vpptest.Server)
		want     []string
		fullOnly bool
	}{
		{name: "NewRegistered",
			change: func(d *vpptest.Server) { d.Put(vu(3, "carol", vpptest.StatusRegistered)) },
			want:   []string{"user.registered carol registered -"}},
		{name: "RegisteredToAssociated",
			change: func(d *vpptest.Server) { d.Put(vu(2, "bob", vpptest.StatusAssociated)) },
			want:   []string{"user.associated bob associated registered"}},
		{name: "AssociatedToRetired",
			change: func(d *vpptest.Server) { d.Put(vu(1, "alice", vpptest.StatusRetired)) },
			want:   []string{"user.retired alice retired associated"}},
		{name: "ActiveGoneRetiredAppears",
			change: func(d *vpptest.Server) { d.Remove(1); d.Put(vu(7, "alice", vpptest.StatusRetired)) },
			want:   []string{"user.retired alice retired associated"}},
		{name: "RecreatedAfterRetirement",
			extra:  []vpptest.User{vu(5, "dave", vpptest.StatusRetired)},
			change: func(d *vpptest.Server) { d.Put(vu(8, "dave", vpptest.StatusRegistered)) },
			want:   []string{"user.registered dave registered retired"}},
		{name: "RecreatedAndAssociated",
			extra:  []vpptest.User{vu(5, "dave", vpptest.StatusRetired)},
			change: func(d *vpptest.Server) { d.Put(vu(8, "dave", vpptest.StatusAssociated)) },
			want:   []string{"user.registered dave registered retired", "user.associated dave associated registered"}},
		{name: "EmailChanged",
			change: func(d *vpptest.Server) {
				u := vu(1, "alice", vpptest.StatusAssociated)
				u.Email = "alice.new@school.example"
				d.Put(u)
			},
			want: []string{"user.updated alice associated associated"}},
		{name: "DeletedLegacyState",
			change: func(d *vpptest.Server) {
				u := vu(1, "alice", vpptest.StatusAssociated)
				u.Status = vpptest.StatusDeleted
				d.Put(u)
			},
			want: []string{"user.retired alice retired associated"}},
		{name: "OldRetiredDuplicateModified",
			// alice has an old retired entry beside her active one; the
			// old entry changing must not retire her.
			extra: []vpptest.User{vu(0, "alice", vpptest.StatusRetired)},
			change: func(d *vpptest.Server) {
				u := vu(0, "alice", vpptest.StatusRetired)
				u.Email = "old@school.example"
				d.Put(u)
			},
			want: nil},
		{name: "RetiredDuplicateListedAfterActive",
			// A retired entry on a later page never overrides the active one.
			change: func(d *vpptest.Server) { d.Put(vu(9, "alice", vpptest.StatusRetired)) },
			want:   nil},
		{name: "AbsentFromConfirmedFullSnapshot",
			change:   func(d *vpptest.Server) { d.Remove(2) },
			want:     []string{"user.retired bob removed registered"},
			fullOnly: true},
	} {
		for _, mode := range []string{"full", "incremental"} {
			if mode == "incremental" && tc.fullOnly {
				continue
			}
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				fullEvery := time.Duration(0) // every run a full listing
				if mode == "incremental" {
					fullEvery = time.Hour
				}
				// Pages of one entry: a key's entries are on different pages.
				r := newRig(t, fullEvery, 1, append(slices.Clone(base), tc.extra...)...)
				r.run(t)
				if got := r.trail(t); len(got) != 0 {
					t.Fatalf("seed published %v", got)
				}
				tc.change(r.dir)
				res := r.run(t)
				if mode == "incremental" && res.Complete {
					t.Errorf("second run was complete, want an incremental one")
				}
				if got := r.trail(t); !slices.Equal(got, tc.want) {
					t.Errorf("events %q, want %q", got, tc.want)
				}
				// Nothing more: a full listing agrees with what was recorded.
				r.run(t)
				if got := r.trail(t); !slices.Equal(got, tc.want) {
					t.Errorf("after another run: events %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// SPEC §1.3 for vpp2: a complete listing that lost most users holds the
// removals (the guard); one that lost one confirms it by lookup first.
func TestRemovalGuardAndConfirmation(t *testing.T) {
	var users []vpptest.User
	for i := range 15 {
		users = append(users, vu(int64(i+1), fmt.Sprintf("user%02d", i), vpptest.StatusAssociated))
	}
	r := newRig(t, 0, 4, users...)
	r.run(t)
	for i := range 12 {
		r.dir.Remove(int64(i + 1))
	}
	res := r.run(t)
	if res.Held != 12 {
		t.Errorf("held %d removals, want 12", res.Held)
	}
	if got := r.trail(t); len(got) != 0 {
		t.Errorf("mass removal published %q", got)
	}
	lookups := r.fake.LookupRequests()
	for i := range 12 {
		r.dir.Put(users[i])
	}
	r.dir.Remove(15)
	r.run(t)
	if got, want := r.trail(t), []string{"user.retired user14 removed associated"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if r.fake.LookupRequests() == lookups {
		t.Error("the absence was not confirmed by a clientUserId lookup")
	}
}

// The sToken's expiry reaches the poller's metric, with a warning within
// 30 days of it, as for vpp.
func TestTokenExpiryMetricAndWarning(t *testing.T) {
	exp := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	tok := base64.StdEncoding.EncodeToString([]byte(`{"token":"expiring-inner-token-1","expDate":"` +
		exp.Format("2006-01-02T15:04:05-0700") + `","orgName":"Soon"}`))
	fake := vpp2test.NewServer(tok, nil)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: srv.URL + "/mdm/v2", SToken: tok, Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewPoller(reg)
	var logs syncbuf.Buffer
	p := poller.New(js, h, poller.Config{Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		poller.SourceConfig{Source: c, Interval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.CheckFor(t, 2*time.Second, "the expiry exported", func() error {
		if got := promtest.ToFloat64(m.TokenExpiry.WithLabelValues("school")); got != float64(exp.Unix()) {
			return fmt.Errorf("metric %v, want %v", got, exp.Unix())
		}
		if !strings.Contains(logs.String(), "expires soon") {
			return fmt.Errorf("no warning in %q", logs.String())
		}
		return nil
	})
}
