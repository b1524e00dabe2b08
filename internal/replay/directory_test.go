package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/pkg/events"
)

// sorted is a snapshot as Directory returns it: sorted by id, numerically
// for VPP ids.
func sorted(us []events.User) []events.User {
	out := slices.Clone(us)
	slices.SortFunc(out, func(a, b events.User) int {
		if len(a.ID) != len(b.ID) {
			return len(a.ID) - len(b.ID)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func sameUsers(t *testing.T, what string, got, want []events.User) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", " ")
	w, _ := json.MarshalIndent(want, "", " ")
	if !bytes.Equal(g, w) {
		t.Fatalf("%s: directory\n%s\nwant\n%s", what, g, w)
	}
}

// The directory as it was at any time after the baseline is the snapshot
// that was current then: through associations, retirements, a removal, a
// re-registration, field changes, and with another source's events on the
// same stream.
func TestDirectoryAsOf(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	vpp := func(id int, status, email string) events.User { return vppUser("vpp", id, status, email) }
	snaps := [][]events.User{
		// 0: the baseline, stored silently.
		{vpp(1, "registered", "ann@example.com"), vpp(2, "associated", "bob@example.com"),
			vpp(3, "registered", "cid@example.com"), vpp(4, "retired", "dan@example.com")},
		// 1: 1 associated, 3's email changes, 5 first seen associated, 10 new.
		{vpp(1, "associated", "ann@example.com"), vpp(2, "associated", "bob@example.com"),
			vpp(3, "registered", "cid@example.org"), vpp(4, "retired", "dan@example.com"),
			vpp(5, "associated", "eve@example.com"), vpp(10, "registered", "ten@example.com")},
		// 2: 2 removed from the directory.
		{vpp(1, "associated", "ann@example.com"), vpp(3, "registered", "cid@example.org"),
			vpp(4, "retired", "dan@example.com"), vpp(5, "associated", "eve@example.com"),
			vpp(10, "registered", "ten@example.com")},
		// 3: 2 registered again, 1 retired.
		{vpp(1, "retired", "ann@example.com"), vpp(2, "registered", "bob@example.com"),
			vpp(3, "registered", "cid@example.org"), vpp(4, "retired", "dan@example.com"),
			vpp(5, "associated", "eve@example.com"), vpp(10, "registered", "ten@example.com")},
		// 4: 3 and 10 removed, 2 associated again.
		{vpp(1, "retired", "ann@example.com"), vpp(2, "associated", "bob@example.com"),
			vpp(4, "retired", "dan@example.com"), vpp(5, "associated", "eve@example.com")},
	}
	w.seed("vpp", events.KindVPP, snaps[0])
	w.seed("veeam", events.KindVeeam, []events.User{veeamUser("veeam", "1", "not-vpp", "CompanyOwner", "Enabled")})
	info, err := w.h.Baselines.GetInfo(ctx, "vpp")
	if err != nil {
		t.Fatal(err)
	}
	times := make([]time.Time, len(snaps))
	times[0] = info.ModTime
	for i := 1; i < len(snaps); i++ {
		time.Sleep(20 * time.Millisecond)
		times[i] = time.Now()
		w.step("vpp", snaps[i], times[i])
		// Another source changing at the same times, with a user whose id
		// is also a VPP id: it must not leak into vpp's directory.
		w.step("veeam", []events.User{veeamUser("veeam", "1", "not-vpp", []string{"CompanyOwner", "CompanyAdministrator"}[i%2], "Enabled"),
			veeamUser("veeam", "7", "x", "CompanyOwner", "Enabled")}, times[i])
	}
	types := map[string]bool{}
	for _, s := range streamEvents(t, w.js) {
		if events.SourceName(s.Event) == "vpp" {
			types[s.Event.Type()] = true
		}
	}
	for _, typ := range []string{events.TypeRegistered, events.TypeAssociated, events.TypeRetired, events.TypeUpdated} {
		if !types[typ] {
			t.Fatalf("the scenario has no %s event: %v", typ, types)
		}
	}
	cases := []struct {
		name string
		asOf time.Time
		want int // index into snaps
	}{
		{"at the baseline time", times[0], 0},
		{"after the baseline, before any event", times[1].Add(-time.Millisecond), 0},
		{"at the first change", times[1], 1},
		{"between changes", times[1].Add(10 * time.Millisecond), 1},
		{"after a removal", times[2].Add(time.Millisecond), 2},
		{"after a re-registration", times[3].Add(time.Millisecond), 3},
		{"after the last change", times[4].Add(time.Millisecond), 4},
		{"much later", time.Now().Add(24 * time.Hour), 4},
		{"zero means now", time.Time{}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replay.Directory(ctx, w.js, "vpp", tc.asOf)
			if err != nil {
				t.Fatal(err)
			}
			sameUsers(t, tc.name, got, sorted(snaps[tc.want]))
		})
	}
	// A user removed and back is in the directory with its new state; a
	// user retired by VPP stays listed as retired, as VPP lists it.
	got, err := replay.Directory(ctx, w.js, "vpp", times[3].Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(got, func(u events.User) bool { return u.ID == "2" }); i < 0 || got[i].Status != "registered" {
		t.Fatalf("re-registered user: %+v", got)
	}
}

// Numeric ids sort by value, as VPP users are numbered.
func TestDirectorySortsNumerically(t *testing.T) {
	w := newWorld(t)
	var us []events.User
	for _, id := range []int{100, 9, 20, 1} {
		us = append(us, vppUser("vpp", id, "registered", "x@example.com"))
	}
	w.seed("vpp", events.KindVPP, us)
	got, err := replay.Directory(context.Background(), w.js, "vpp", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range got {
		ids = append(ids, u.ID)
	}
	if !slices.Equal(ids, []string{"1", "9", "20", "100"}) {
		t.Fatalf("order %v", ids)
	}
}

// A source seeded again from scratch (its state lost) has a new baseline;
// events stored before it belong to the old seeding and are not applied.
func TestDirectoryNewBaselineSupersedesOlderEvents(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.seed("vpp", events.KindVPP, []events.User{vppUser("vpp", 1, "registered", "a@example.com")})
	w.step("vpp", []events.User{vppUser("vpp", 1, "associated", "a@example.com"), vppUser("vpp", 2, "registered", "b@example.com")}, time.Now())
	time.Sleep(10 * time.Millisecond)
	// Re-seeded: user 2 left while nobody watched, 1 changed its email.
	reseed := []events.User{vppUser("vpp", 1, "associated", "a@example.org")}
	w.seed("vpp", events.KindVPP, reseed)
	got, err := replay.Directory(ctx, w.js, "vpp", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	sameUsers(t, "after re-seeding", got, reseed)
	time.Sleep(10 * time.Millisecond)
	later := []events.User{vppUser("vpp", 1, "retired", "a@example.org"), vppUser("vpp", 3, "registered", "c@example.com")}
	w.step("vpp", later, time.Now())
	got, err = replay.Directory(ctx, w.js, "vpp", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	sameUsers(t, "after the new baseline's events", got, later)
}

func TestDirectoryErrors(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.seed("vpp", events.KindVPP, []events.User{vppUser("vpp", 1, "registered", "a@example.com")})
	info, err := w.h.Baselines.GetInfo(ctx, "vpp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.h.Baselines.PutBytes(ctx, "broken", []byte(`{"not":"an array"}`)); err != nil {
		t.Fatal(err)
	}
	_, bare := natstest.Connect(t, natstest.Start(t)) // a server no poller has used
	for _, tc := range []struct {
		name   string
		js     jetstream.JetStream
		source string
		asOf   time.Time
		is     error
		says   []string
	}{
		{name: "unknown source", js: w.js, source: "veeam", asOf: time.Now(), is: replay.ErrUnknownSource,
			says: []string{`no baseline "veeam"`, bus.BaselinesBucket}},
		{name: "before the baseline", js: w.js, source: "vpp", asOf: info.ModTime.Add(-time.Second), is: replay.ErrBeforeBaseline,
			says: []string{"no state before the baseline time", info.ModTime.UTC().Format(time.RFC3339Nano)}},
		{name: "long before the baseline", js: w.js, source: "vpp", asOf: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), is: replay.ErrBeforeBaseline,
			says: []string{"2020-01-01T00:00:00Z"}},
		{name: "invalid source name", js: w.js, source: "rollcall.events.>", asOf: time.Now(), is: replay.ErrInvalidOptions,
			says: []string{"not a valid source name"}},
		{name: "no object store", js: bare, source: "vpp", asOf: time.Now(), is: replay.ErrUnknownSource,
			says: []string{"object store rollcall_baselines does not exist"}},
		{name: "baseline not an array", js: w.js, source: "broken", asOf: time.Now(),
			says: []string{"baseline is not a JSON array of users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, err := replay.Directory(ctx, tc.js, tc.source, tc.asOf)
			if err == nil {
				t.Fatalf("no error; directory %v", users)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err %v, want %v", err, tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestWriteUsers(t *testing.T) {
	us := []events.User{vppUser("vpp", 1, "registered", "a@example.com"), vppUser("vpp", 2, "associated", "b@example.com")}
	var buf bytes.Buffer
	if err := replay.WriteUsers(&buf, us); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%q", buf.String())
	}
	for i, l := range lines {
		var u events.User
		if err := json.Unmarshal([]byte(l), &u); err != nil || u.ID != us[i].ID || u.Status != us[i].Status {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
	}
}

// A baseline an earlier release stored with a VPP invite code in raw does
// not print it (issue 14: no secret leaves rollcall).
func TestDirectoryDropsSecretsOfOldBaselines(t *testing.T) {
	w := newWorld(t)
	const invite = "0ld1nv1tec0de0000000000000000001"
	u := vppUser("vpp", 1, "registered", "a@example.com")
	u.Raw = json.RawMessage(`{"userId":1,"inviteCode":"` + invite + `","email":"a@example.com"}`)
	w.seed("vpp", events.KindVPP, []events.User{u})
	got, err := replay.Directory(context.Background(), w.js, "vpp", time.Time{})
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
	if strings.Contains(string(got[0].Raw), invite) || !strings.Contains(string(got[0].Raw), `"userId":1`) {
		t.Fatalf("raw %s", got[0].Raw)
	}
}

// One message on a source's subjects that is not a rollcall event (a
// hand-published test, a bug of an earlier release) is skipped and
// counted, as Replay skips it: the directory is still rebuilt from every
// other event, with an error wrapping ErrUndecodable that says where.
func TestDirectorySkipsUndecodable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.seed("vpp", events.KindVPP, []events.User{vppUser("vpp", 1, "registered", "a@example.com")})
	foreign := func(data string) uint64 {
		t.Helper()
		e, err := events.New(events.Spec{Type: events.TypeRegistered, User: vppUser("vpp", 9, "registered", "z@example.com"), Reason: events.ReasonNew, Observed: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		m, err := bus.Msg(e)
		if err != nil {
			t.Fatal(err)
		}
		m.Data = []byte(data)
		m.Header.Del(jetstream.MsgIDHeader)
		ack, err := w.js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	first := foreign(`{"user": not json`)
	want := []events.User{vppUser("vpp", 1, "associated", "a@example.com"), vppUser("vpp", 2, "registered", "b@example.com")}
	w.step("vpp", want, time.Now())
	second := foreign(`not even an object`)
	users, stats, err := replay.DirectoryWithStats(ctx, w.js, "vpp", time.Time{})
	if !errors.Is(err, replay.ErrUndecodable) {
		t.Fatalf("err %v, want ErrUndecodable", err)
	}
	if !strings.Contains(err.Error(), "2 skipped") {
		t.Errorf("error %q does not say how many were skipped", err)
	}
	sameUsers(t, "with two undecodable messages", users, want)
	if stats.Undecodable != 2 || !slices.Equal(stats.UndecodableSeqs, []uint64{first, second}) || stats.Applied != 2 {
		t.Errorf("stats %+v, want 2 undecodable at %d and %d, 2 applied", stats, first, second)
	}
	// Directory says the same, users and all.
	if users, err := replay.Directory(ctx, w.js, "vpp", time.Time{}); !errors.Is(err, replay.ErrUndecodable) || len(users) != 2 {
		t.Errorf("Directory: %d users, %v; want 2 and ErrUndecodable", len(users), err)
	}
}
