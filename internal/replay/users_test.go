package replay_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/pkg/events"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// people is a world of two sources: vpp (numeric ids, e-mail addresses;
// 118 and 120 share an address, 121 changed its address) and veeam (user
// names; carol never changed, so she is only in the baseline).
func people(t *testing.T) *world {
	t.Helper()
	w := newWorld(t)
	v := func(id int, status, email string) events.User { return vppUser("vpp", id, status, email) }
	w.seed("vpp", events.KindVPP, []events.User{
		v(118, "registered", "person118@school.example"),
		v(119, "registered", "person119@school.example"),
		v(121, "registered", "old121@school.example"),
	})
	w.seed("veeam", events.KindVeeam, []events.User{
		veeamUser("veeam", "u-alice", "alice", "CompanyOwner", "Enabled"),
		veeamUser("veeam", "u-carol", "carol", "CompanyUser", "Enabled"),
	})
	now := time.Now()
	w.step("vpp", []events.User{
		v(118, "associated", "person118@school.example"),
		v(119, "registered", "person119@school.example"),
		v(120, "registered", "Person118@School.example"),
		v(121, "registered", "new121@school.example"),
	}, now)
	w.step("veeam", []events.User{
		veeamUser("veeam", "u-alice", "alice", "CompanyAdministrator", "Enabled"),
		veeamUser("veeam", "u-carol", "carol", "CompanyUser", "Enabled"),
		veeamUser("veeam", "118", "person118@school.example", "CompanyUser", "Enabled"),
	}, now)
	return w
}

func TestResolveUser(t *testing.T) {
	w := people(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, source, who string
		want              []string
		err               string
	}{
		{name: "id of a source", source: "vpp", who: "118", want: []string{"vpp/118"}},
		{name: "id in every source", who: "118", want: []string{"veeam/118", "vpp/118"}},
		{name: "id with no events, from the baseline", source: "veeam", who: "u-carol", want: []string{"veeam/u-carol"}},
		{name: "e-mail shared by two users, any case", source: "vpp", who: "PERSON118@school.example", want: []string{"vpp/118", "vpp/120"}},
		{name: "e-mail across sources", who: "person118@school.example", want: []string{"veeam/118", "vpp/118", "vpp/120"}},
		{name: "user name", who: "alice", want: []string{"veeam/u-alice"}},
		{name: "user name only in the baseline", who: "carol", want: []string{"veeam/u-carol"}},
		{name: "former e-mail", source: "vpp", who: "old121@school.example", want: []string{"vpp/121"}},
		{name: "new e-mail", who: "new121@school.example", want: []string{"vpp/121"}},
		{name: "other source", source: "veeam", who: "person119@school.example", err: `no user of source veeam has the id, e-mail address or user name "person119@school.example"`},
		{name: "unknown", who: "nobody@x.example", err: `no user of any source has the id, e-mail address or user name "nobody@x.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replay.ResolveUser(ctx, w.js, tc.source, tc.who)
			if tc.err != "" {
				if !errors.Is(err, replay.ErrUnknownUser) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ResolveUser = %v, %v; want %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, u := range got {
				s = append(s, u.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Fatalf("ResolveUser = %v, want %v", s, tc.want)
			}
		})
	}
}

// TestReplayUsers: several users' histories, in stream order, and no one
// else's.
func TestReplayUsers(t *testing.T) {
	w := people(t)
	refs := []replay.UserRef{{Source: "vpp", ID: "118"}, {Source: "vpp", ID: "120"}, {Source: "veeam", ID: "118"}}
	for _, tc := range []struct {
		name  string
		types []string
	}{
		{name: "every type"},
		{name: "registered only", types: []string{events.TypeRegistered}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c collect
			if _, err := replay.Replay(context.Background(), w.js, replay.Options{Users: refs, Types: tc.types}, &c); err != nil {
				t.Fatal(err)
			}
			want := idsOf(streamEvents(t, w.js), func(e events.Event) bool {
				if len(tc.types) > 0 && !slices.Contains(tc.types, e.Type()) {
					return false
				}
				return slices.Contains(refs, replay.UserRef{Source: events.SourceName(e), ID: e.Subject()})
			})
			if len(want) < 2 {
				t.Fatalf("the world has only %d such events", len(want))
			}
			sameIDs(t, c.ids(), want)
		})
	}
	if err := (replay.Options{User: "1", Users: refs}).Validate(); err == nil {
		t.Error("User and Users together are accepted")
	}
}

func TestCheckSource(t *testing.T) {
	w := people(t)
	ctx := context.Background()
	for _, tc := range []struct{ source, err string }{
		{source: "vpp"},
		{source: "veeam"},
		{source: "nosuch", err: `unknown source "nosuch": known sources are veeam, vpp`},
	} {
		t.Run(tc.source, func(t *testing.T) {
			err := replay.CheckSource(ctx, w.js, tc.source)
			if tc.err == "" && err != nil || tc.err != "" && (!errors.Is(err, replay.ErrUnknownSource) || err.Error() != tc.err) {
				t.Fatalf("CheckSource(%s) = %v, want %q", tc.source, err, tc.err)
			}
		})
	}
	// A source with events but no baseline (stored by an older release,
	// or its baseline lost) is known too.
	if err := w.h.Baselines.Delete(ctx, "vpp"); err != nil {
		t.Fatal(err)
	}
	if err := replay.CheckSource(ctx, w.js, "vpp"); err != nil {
		t.Errorf("vpp without a baseline: %v", err)
	}
	if known, err := replay.KnownSources(ctx, w.js); err != nil || !slices.Equal(known, []string{"veeam", "vpp"}) {
		t.Errorf("KnownSources = %v, %v", known, err)
	}
}

func TestCheckSourceEmptyServer(t *testing.T) {
	w := newWorld(t)
	err := replay.CheckSource(context.Background(), w.js, "vpp")
	if !errors.Is(err, replay.ErrUnknownSource) || !strings.Contains(err.Error(), "no source has completed a first snapshot") {
		t.Fatalf("CheckSource on an empty server: %v", err)
	}
}

// TestWriteUserTable: `replay --as-of --format text` prints an aligned
// table with the columns that have values; hostile values are quoted.
func TestWriteUserTable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		users []events.User
	}{
		{name: "vpp", users: []events.User{
			vppUser("vpp", 9, "registered", "person9@school.example"),
			vppUser("vpp", 118, "associated", "person118@school.example"),
			vppUser("vpp", 1000, "retired", ""),
		}},
		{name: "veeam", users: []events.User{
			{Source: "veeam", ID: "u-1", UserName: "alice", FirstName: "Ada", LastName: "Lovelace", Status: "Enabled", Role: "CompanyOwner", OrganizationID: "org-1"},
			{Source: "veeam", ID: "u-2", UserName: "bob\x1b[2J", Email: "bob@x.example", Status: "disabled", Role: "Company\nUser"},
			{Source: "veeam", ID: "u-3", UserName: "zoë", FirstName: "Zoë", Status: "enabled", Role: "PortalAdministrator"},
		}},
		{name: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := replay.WriteUserTable(&buf, tc.users); err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(buf.String(), "\x1b\r") || strings.Count(buf.String(), "\n") != len(tc.users)+1 {
				t.Errorf("not one line per user:\n%q", buf.String())
			}
			golden(t, "table-"+tc.name+".golden", buf.String())
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}
