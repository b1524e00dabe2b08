package replay_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/pkg/events"
)

// Timing of the trail: steps are gap apart, boundaries lie half-way, and
// the replays run with a skew well below half the gap, so that where the
// stream is entered and left (storage times) is decided by the bounds.
const (
	gap  = time.Second
	skew = 300 * time.Millisecond
)

// trail is a realistic audit trail: three sources (two VPP organisations
// whose user ids overlap, and a Veeam console) seeded silently and then
// changed in three observed steps.
type trail struct {
	w     *world
	steps [3]time.Time
	all   []stored
}

func (tr *trail) mid(i int) time.Time { return tr.steps[i].Add(gap / 2) }

func buildTrail(t *testing.T) *trail {
	t.Helper()
	w := newWorld(t)
	const a, b, c = "3f1c2a10-0000-4000-8000-00000000000a", "3f1c2a10-0000-4000-8000-00000000000b", "3f1c2a10-0000-4000-8000-00000000000c"
	w.seed("vpp", events.KindVPP, []events.User{
		vppUser("vpp", 1, "registered", "ann@example.com"), vppUser("vpp", 2, "associated", "bob@example.com"),
		vppUser("vpp", 3, "registered", "cid@example.com"),
	})
	w.seed("vpp-eu", events.KindVPP, []events.User{vppUser("vpp-eu", 7, "registered", "eve@example.eu")})
	w.seed("veeam", events.KindVeeam, []events.User{
		veeamUser("veeam", a, "alice", "CompanyAdministrator", "Enabled"), veeamUser("veeam", b, "bert", "CompanyOwner", "Enabled"),
	})
	tr := &trail{w: w}
	time.Sleep(gap)
	snaps := [3]map[string][]events.User{
		{
			"vpp": {vppUser("vpp", 1, "associated", "ann@example.com"), vppUser("vpp", 2, "associated", "bob@example.com"),
				vppUser("vpp", 3, "registered", "cid@example.com"), vppUser("vpp", 4, "registered", "dan@example.com"),
				vppUser("vpp", 7, "associated", "gus@example.com")},
			"vpp-eu": {vppUser("vpp-eu", 7, "associated", "eve@example.eu"), vppUser("vpp-eu", 8, "registered", "fay@example.eu")},
			"veeam": {veeamUser("veeam", a, "alice", "CompanyOwner", "Enabled"), veeamUser("veeam", b, "bert", "CompanyOwner", "Enabled"),
				veeamUser("veeam", c, "carl", "PortalAdministrator", "Enabled")},
		},
		{
			// 2 removed, 7 retired, 3's email changed.
			"vpp": {vppUser("vpp", 1, "associated", "ann@example.com"), vppUser("vpp", 3, "registered", "cid@example.org"),
				vppUser("vpp", 4, "registered", "dan@example.com"), vppUser("vpp", 7, "retired", "gus@example.com")},
			"vpp-eu": {vppUser("vpp-eu", 7, "associated", "eve@example.org"), vppUser("vpp-eu", 8, "registered", "fay@example.eu")},
			"veeam": {veeamUser("veeam", a, "alice", "CompanyAdministrator", "Enabled"), veeamUser("veeam", b, "bert", "CompanyOwner", "Disabled"),
				veeamUser("veeam", c, "carl", "PortalAdministrator", "Enabled")},
		},
		{
			// 2 back, 1 retired; carl removed; 8 associated.
			"vpp": {vppUser("vpp", 1, "retired", "ann@example.com"), vppUser("vpp", 2, "registered", "bob@example.com"),
				vppUser("vpp", 3, "registered", "cid@example.org"), vppUser("vpp", 4, "registered", "dan@example.com"),
				vppUser("vpp", 7, "retired", "gus@example.com")},
			"vpp-eu": {vppUser("vpp-eu", 7, "associated", "eve@example.org"), vppUser("vpp-eu", 8, "associated", "fay@example.eu")},
			"veeam":  {veeamUser("veeam", a, "alice", "CompanyAdministrator", "Enabled"), veeamUser("veeam", b, "bert", "CompanyOwner", "Disabled")},
		},
	}
	for i, snap := range snaps {
		if i > 0 {
			time.Sleep(gap)
		}
		tr.steps[i] = time.Now()
		for _, src := range []string{"vpp", "vpp-eu", "veeam"} {
			w.step(src, snap[src], tr.steps[i])
		}
	}
	tr.all = streamEvents(t, w.js)
	types := map[string]bool{}
	for _, s := range tr.all {
		types[s.Event.Type()] = true
	}
	if len(types) != len(events.Types) {
		t.Fatalf("the trail should hold every event type, has %v", types)
	}
	return tr
}

func TestReplayFilters(t *testing.T) {
	tr := buildTrail(t)
	source := func(s string) func(events.Event) bool {
		return func(e events.Event) bool { return events.SourceName(e) == s }
	}
	typ := func(ts ...string) func(events.Event) bool {
		return func(e events.Event) bool { return slices.Contains(ts, e.Type()) }
	}
	user := func(id string) func(events.Event) bool {
		return func(e events.Event) bool { return e.Subject() == id }
	}
	between := func(since, until time.Time) func(events.Event) bool {
		return func(e events.Event) bool {
			return (since.IsZero() || !e.Time().Before(since)) && (until.IsZero() || !e.Time().After(until))
		}
	}
	and := func(fs ...func(events.Event) bool) func(events.Event) bool {
		return func(e events.Event) bool {
			for _, f := range fs {
				if !f(e) {
					return false
				}
			}
			return true
		}
	}
	all := func(events.Event) bool { return true }
	cases := []struct {
		name string
		o    replay.Options
		keep func(events.Event) bool
		// early: the replay must stop before reading the rest of the
		// stream (Until), or start after its beginning (Since).
		early, late bool
	}{
		{name: "everything", keep: all},
		{name: "source", o: replay.Options{Source: "vpp"}, keep: source("vpp")},
		{name: "source with a dash", o: replay.Options{Source: "vpp-eu"}, keep: source("vpp-eu")},
		{name: "one type", o: replay.Options{Types: []string{events.TypeRetired}}, keep: typ(events.TypeRetired)},
		{name: "two types", o: replay.Options{Types: []string{events.TypeRegistered, events.TypeRoleChanged}},
			keep: typ(events.TypeRegistered, events.TypeRoleChanged)},
		{name: "a type twice", o: replay.Options{Types: []string{events.TypeUpdated, events.TypeUpdated}}, keep: typ(events.TypeUpdated)},
		{name: "user of a source", o: replay.Options{Source: "vpp", User: "7"}, keep: and(source("vpp"), user("7"))},
		{name: "user in every source", o: replay.Options{User: "7"}, keep: user("7")},
		{name: "veeam user", o: replay.Options{Source: "veeam", User: "3f1c2a10-0000-4000-8000-00000000000a"},
			keep: user("3f1c2a10-0000-4000-8000-00000000000a")},
		{name: "source and type", o: replay.Options{Source: "vpp", Types: []string{events.TypeRetired}},
			keep: and(source("vpp"), typ(events.TypeRetired))},
		{name: "source, user and type", o: replay.Options{Source: "vpp", User: "2", Types: []string{events.TypeRegistered}},
			keep: and(source("vpp"), user("2"), typ(events.TypeRegistered))},
		{name: "since", o: replay.Options{Since: tr.mid(0)}, keep: between(tr.mid(0), time.Time{}), late: true},
		{name: "until", o: replay.Options{Until: tr.mid(0)}, keep: between(time.Time{}, tr.mid(0)), early: true},
		{name: "since and until", o: replay.Options{Since: tr.mid(0), Until: tr.mid(1)}, keep: between(tr.mid(0), tr.mid(1)), early: true, late: true},
		{name: "since exactly an event's time", o: replay.Options{Since: tr.steps[1]}, keep: between(tr.steps[1], time.Time{})},
		{name: "until exactly an event's time", o: replay.Options{Until: tr.steps[1]}, keep: between(time.Time{}, tr.steps[1])},
		{name: "source, type and since", o: replay.Options{Source: "veeam", Types: []string{events.TypeUpdated, events.TypeRegistered}, Since: tr.mid(0)},
			keep: and(source("veeam"), typ(events.TypeUpdated, events.TypeRegistered), between(tr.mid(0), time.Time{}))},
		{name: "user and until", o: replay.Options{Source: "vpp", User: "1", Until: tr.mid(1)}, keep: and(source("vpp"), user("1"), between(time.Time{}, tr.mid(1)))},
		{name: "nothing matches", o: replay.Options{Source: "vpp", User: "999"}, keep: func(events.Event) bool { return false }},
		{name: "unknown source", o: replay.Options{Source: "nowhere"}, keep: func(events.Event) bool { return false }},
		{name: "since after the last event", o: replay.Options{Since: time.Now().Add(time.Hour)}, keep: func(events.Event) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Skew = skew
			var out collect
			began := time.Now()
			st, err := replay.Replay(context.Background(), tr.w.js, tc.o, &out)
			if err != nil {
				t.Fatal(err)
			}
			want := idsOf(tr.all, tc.keep)
			sameIDs(t, out.ids(), want)
			if st.Sent != len(want) || st.Read != st.Sent+st.Skipped && st.Read != st.Sent+st.Skipped+1 {
				t.Errorf("stats %+v, want %d sent", st, len(want))
			}
			if d := time.Since(began); d > 3*time.Second {
				t.Errorf("replay took %v: it must not wait for more events", d)
			}
			if tc.early && st.Read > len(want)+1 {
				t.Errorf("until: read %d messages for %d events: it should stop at the first one stored after --until", st.Read, len(want))
			}
			if tc.late && st.Matched >= uint64(len(tr.all)) {
				t.Errorf("since: the consumer started with %d of %d messages pending: it should start at --since, not at the beginning", st.Matched, len(tr.all))
			}
			if tc.o.Since.IsZero() && tc.o.Until.IsZero() && st.Read != len(want) {
				t.Errorf("read %d messages for %d events: the filter should be the server's", st.Read, len(want))
			}
		})
	}
}

// A user of a source is answered from its own subject: among thousands of
// other events the server delivers only that user's, and says so before
// the first one arrives.
func TestReplayUserFromItsSubject(t *testing.T) {
	w := newWorld(t)
	const others = 1500
	snap := func(step int) []events.User {
		var us []events.User
		for i := 1; i <= others; i++ {
			us = append(us, vppUser("vpp", 1000+i, "registered", fmt.Sprintf("u%d-%d@example.com", i, step)))
		}
		return us
	}
	// The user's id needs encoding in the subject ("." and "@").
	const id = "anna.berg@example.com"
	target := func(name, role string) events.User {
		return veeamUser("veeam", id, name, role, "Enabled")
	}
	w.seed("vpp", events.KindVPP, snap(0))
	w.seed("veeam", events.KindVeeam, []events.User{target("anna", "CompanyAdministrator"), veeamUser("veeam", "other", "o", "CompanyOwner", "Enabled")})
	var mine []string
	for step := 1; step <= 3; step++ {
		w.step("vpp", snap(step), time.Now())
		for _, e := range w.step("veeam", []events.User{target(fmt.Sprintf("anna%d", step), []string{"CompanyOwner", "CompanyAdministrator"}[step%2]),
			veeamUser("veeam", "other", fmt.Sprintf("o%d", step), "CompanyOwner", "Enabled")}, time.Now()) {
			if e.Subject() == id {
				mine = append(mine, e.ID())
			}
		}
	}
	info, err := w.js.Stream(context.Background(), bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	total := info.CachedInfo().State.Msgs
	if total < 3*others {
		t.Fatalf("only %d events on the stream", total)
	}
	var out collect
	st, err := replay.Replay(context.Background(), w.js, replay.Options{Source: "veeam", User: id}, &out)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, out.ids(), mine)
	if st.Matched != uint64(len(mine)) || st.Read != len(mine) {
		t.Fatalf("stream of %d events: the consumer had %d pending and delivered %d; want exactly the user's %d",
			total, st.Matched, st.Read, len(mine))
	}
	if got := replay.FilterSubjects(replay.Options{Source: "veeam", User: id}); !slices.Equal(got, []string{"rollcall.events.veeam.anna_2Eberg_40example_2Ecom.>"}) {
		t.Fatalf("filter %v", got)
	}
}

// Events published while a replay runs are not part of it: the replay ends
// at the end of the stream as it was at its start, and returns without
// waiting.
func TestReplayStopsAtEndOfStreamAsAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    replay.Options
	}{
		{name: "whole stream"},
		{name: "filtered", o: replay.Options{Source: "vpp"}},
		{name: "one user", o: replay.Options{Source: "vpp", User: "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.seed("vpp", events.KindVPP, []events.User{vppUser("vpp", 1, "registered", "a@example.com")})
			users := func(step, n int) []events.User {
				us := []events.User{vppUser("vpp", 1, "registered", fmt.Sprintf("a%d@example.com", step))}
				for i := 2; i <= n; i++ {
					us = append(us, vppUser("vpp", i, "registered", fmt.Sprintf("u%d-%d@example.com", i, step)))
				}
				return us
			}
			w.step("vpp", users(1, 20), time.Now())
			before := streamEvents(t, w.js)
			want := idsOf(before, func(e events.Event) bool {
				return tc.o.User == "" || e.Subject() == tc.o.User
			})
			step := 1
			out := collect{onSend: func(n int, e events.Event) error {
				// A slow sink, and a poller publishing meanwhile.
				time.Sleep(5 * time.Millisecond)
				if n%3 == 0 {
					step++
					w.step("vpp", users(step, 20), time.Now())
				}
				return nil
			}}
			began := time.Now()
			st, err := replay.Replay(context.Background(), w.js, tc.o, &out)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(began); d > 4*time.Second {
				t.Fatalf("replay took %v", d)
			}
			sameIDs(t, out.ids(), want)
			after := streamEvents(t, w.js)
			if len(after) <= len(before) || st.EndSeq != before[len(before)-1].Seq {
				t.Fatalf("stream grew from %d to %d events during the replay; replay ended at seq %d", len(before), len(after), st.EndSeq)
			}
			// A replay started now sees them.
			var again collect
			if _, err := replay.Replay(context.Background(), w.js, tc.o, &again); err != nil {
				t.Fatal(err)
			}
			if len(again.ids()) <= len(want) {
				t.Fatalf("second replay: %d events, want more than %d", len(again.ids()), len(want))
			}
		})
	}
}

func TestReplayEmptyStream(t *testing.T) {
	w := newWorld(t)
	var out collect
	prog := &syncbuf.Buffer{}
	st, err := replay.Replay(context.Background(), w.js, replay.Options{Progress: prog}, &out)
	if err != nil || st.Read != 0 || len(out.ids()) != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if !strings.Contains(prog.String(), "the stream is empty") {
		t.Fatalf("progress: %q", prog.String())
	}
}

func TestReplayNoStream(t *testing.T) {
	w := newWorld(t)
	if err := w.js.DeleteStream(context.Background(), bus.EventsStream); err != nil {
		t.Fatal(err)
	}
	_, err := replay.Replay(context.Background(), w.js, replay.Options{}, &collect{})
	if err == nil || !strings.Contains(err.Error(), bus.EventsStream) {
		t.Fatalf("err %v, want one naming the stream", err)
	}
}

// Long replays write progress lines while they run and a summary at the
// end; nothing of it goes to the sink.
func TestReplayProgress(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	var us []events.User
	for i := 1; i <= 40; i++ {
		us = append(us, vppUser("vpp", i, "registered", fmt.Sprintf("u%d@example.com", i)))
	}
	w.step("vpp", us, time.Now())
	prog := &syncbuf.Buffer{}
	out := collect{onSend: func(int, events.Event) error { time.Sleep(10 * time.Millisecond); return nil }}
	st, err := replay.Replay(context.Background(), w.js, replay.Options{Progress: prog, ProgressEvery: 50 * time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(prog.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("progress: want several lines and a summary, got %q", prog.String())
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "replay: ") || !strings.Contains(l, " of 40 messages read (") || !strings.Contains(l, "/s") {
			t.Errorf("progress line %q", l)
		}
	}
	sum := lines[len(lines)-1]
	if want := fmt.Sprintf("replay: done: 40 sent, 40 read; end of stream at start: seq %d;", st.EndSeq); !strings.HasPrefix(sum, want) {
		t.Errorf("summary %q, want it to start with %q", sum, want)
	}
	// Default interval: a quick replay writes only the summary.
	prog2 := &syncbuf.Buffer{}
	if _, err := replay.Replay(context.Background(), w.js, replay.Options{Progress: prog2}, &collect{}); err != nil {
		t.Fatal(err)
	}
	if l := strings.Split(strings.TrimSpace(prog2.String()), "\n"); len(l) != 1 || !strings.HasPrefix(l[0], "replay: done: 40 sent") {
		t.Errorf("quick replay progress %q", prog2.String())
	}
}

func TestReplaySendErrorAborts(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	w.step("vpp", []events.User{vppUser("vpp", 1, "registered", "a@x.com"), vppUser("vpp", 2, "registered", "b@x.com"),
		vppUser("vpp", 3, "registered", "c@x.com"), vppUser("vpp", 4, "registered", "d@x.com")}, time.Now())
	all := streamEvents(t, w.js)
	refused := errors.New("410 gone")
	out := collect{onSend: func(n int, e events.Event) error {
		if n == 2 {
			return refused
		}
		return nil
	}}
	prog := &syncbuf.Buffer{}
	st, err := replay.Replay(context.Background(), w.js, replay.Options{Progress: prog}, &out)
	if !errors.Is(err, refused) || !errors.Is(err, replay.ErrSink) {
		t.Fatalf("err %v, want the sink's error", err)
	}
	third := all[2]
	for _, s := range []string{third.Event.ID(), fmt.Sprintf("stream seq %d", third.Seq), "after 2 sent"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if st.Sent != 2 || len(out.ids()) != 2 {
		t.Fatalf("sent %d", st.Sent)
	}
	if !strings.Contains(prog.String(), "replay: stopped: 2 sent") || !strings.Contains(prog.String(), "410 gone") {
		t.Fatalf("progress %q", prog.String())
	}
}

// A message on the stream that is not a rollcall event is reported and
// skipped; the replay goes on and then fails, so the exit status shows it.
func TestReplayUndecodable(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	w.step("vpp", []events.User{vppUser("vpp", 1, "registered", "a@x.com")}, time.Now())
	ack, err := w.js.PublishMsg(context.Background(), &nats.Msg{Subject: "rollcall.events.vpp.9.user.registered", Data: []byte("not an event")})
	if err != nil {
		t.Fatal(err)
	}
	w.step("vpp", []events.User{vppUser("vpp", 1, "registered", "a@x.com"), vppUser("vpp", 2, "registered", "b@x.com")}, time.Now())
	prog := &syncbuf.Buffer{}
	var out collect
	st, err := replay.Replay(context.Background(), w.js, replay.Options{Progress: prog}, &out)
	if !errors.Is(err, replay.ErrUndecodable) || !strings.Contains(err.Error(), fmt.Sprint(ack.Sequence)) {
		t.Fatalf("err %v", err)
	}
	if st.Sent != 2 || st.Undecodable != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(prog.String(), fmt.Sprintf("stream seq %d (rollcall.events.vpp.9.user.registered) is not a rollcall event", ack.Sequence)) {
		t.Fatalf("progress %q", prog.String())
	}
}

func TestReplayCancelled(t *testing.T) {
	w := newWorld(t)
	w.seed("vpp", events.KindVPP, nil)
	w.step("vpp", []events.User{vppUser("vpp", 1, "registered", "a@x.com"), vppUser("vpp", 2, "registered", "b@x.com")}, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	out := collect{onSend: func(int, events.Event) error { cancel(); return ctx.Err() }}
	_, err := replay.Replay(ctx, w.js, replay.Options{}, &out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		o    replay.Options
		want string // "" = valid
	}{
		{name: "empty", o: replay.Options{}},
		{name: "everything", o: replay.Options{Since: t0, Until: t0.Add(time.Hour), Types: events.Types, Source: "vpp", User: "1"}},
		{name: "as-of", o: replay.Options{AsOf: t0, Source: "vpp"}},
		{name: "unknown type", o: replay.Options{Types: []string{"user.deleted"}}, want: `unknown event type "user.deleted"`},
		{name: "invalid source", o: replay.Options{Source: "VPP"}, want: `source "VPP" is not a valid source name`},
		{name: "until before since", o: replay.Options{Since: t0, Until: t0.Add(-time.Second)}, want: "is before --since"},
		{name: "as-of without source", o: replay.Options{AsOf: t0}, want: "--as-of needs --source"},
		{name: "as-of with type", o: replay.Options{AsOf: t0, Source: "vpp", Types: []string{events.TypeRetired}}, want: "does not combine"},
		{name: "as-of with since", o: replay.Options{AsOf: t0, Source: "vpp", Since: t0}, want: "does not combine"},
		{name: "as-of with user", o: replay.Options{AsOf: t0, Source: "vpp", User: "1"}, want: "does not combine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, replay.ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	// Replay itself refuses a directory query and invalid options before
	// touching NATS.
	if _, err := replay.Replay(context.Background(), nil, replay.Options{AsOf: t0, Source: "vpp"}, &collect{}); !errors.Is(err, replay.ErrInvalidOptions) {
		t.Fatalf("as-of: %v", err)
	}
}

func TestFilterSubjects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    replay.Options
		want []string
	}{
		{name: "none", want: nil},
		{name: "source", o: replay.Options{Source: "vpp"}, want: []string{"rollcall.events.vpp.>"}},
		{name: "type", o: replay.Options{Types: []string{events.TypeRetired}}, want: []string{"rollcall.events.*.*.user.retired"}},
		{name: "source and types", o: replay.Options{Source: "veeam", Types: []string{events.TypeRoleChanged, events.TypeUpdated}},
			want: []string{"rollcall.events.veeam.*.user.roleChanged", "rollcall.events.veeam.*.user.updated"}},
		{name: "user", o: replay.Options{Source: "vpp", User: "42"}, want: []string{"rollcall.events.vpp.42.>"}},
		{name: "user without source", o: replay.Options{User: "a.b@c"}, want: []string{"rollcall.events.*.a_2Eb_40c.>"}},
		{name: "user and type", o: replay.Options{Source: "vpp", User: "42", Types: []string{events.TypeAssociated}},
			want: []string{"rollcall.events.vpp.42.user.associated"}},
		{name: "duplicate types", o: replay.Options{Types: []string{events.TypeRetired, events.TypeRetired}}, want: []string{"rollcall.events.*.*.user.retired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replay.FilterSubjects(tc.o); !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
