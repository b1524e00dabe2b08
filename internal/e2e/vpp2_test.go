package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// pollerRun is one poller process (pollerapp.Run) over a data directory.
type pollerRun struct {
	cancel context.CancelFunc
	done   chan error
}

func startPoller(t *testing.T, env map[string]string) *pollerRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &pollerRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- pollerapp.Run(ctx, envconfig.MapLookuper(env), io.Discard) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *pollerRun) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("poller: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("poller did not stop within 15s")
	}
}

// adminJS connects to the poller's embedded server as its admin user,
// reconnecting across the poller's restarts.
func adminJS(t *testing.T, dataDir, natsAddr string) jetstream.JetStream {
	t.Helper()
	admin, err := os.ReadFile(filepath.Join(dataDir, pollerapp.AuthDir, "admin.password"))
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.ConnectURL(t, "nats://"+natsAddr, append([]nats.Option{nats.UserInfo("admin", strings.TrimSpace(string(admin))),
		nats.RetryOnFailedConnect(true)}, natstest.Reconnecting...)...)
	return js
}

// trailOf returns a function that reads the whole event stream as
// "source type subject" lines.
func trailOf(t *testing.T, dataDir, natsAddr string) func() []string {
	t.Helper()
	js := adminJS(t, dataDir, natsAddr)
	return func() []string {
		var out []string
		for _, e := range natstest.Events(t, js) {
			out = append(out, events.SourceName(e)+" "+e.Type()+" "+e.Subject())
		}
		return out
	}
}

// seeded waits until the source has committed its first snapshot.
func seeded(t *testing.T, dataDir, natsAddr, source string) {
	t.Helper()
	js := adminJS(t, dataDir, natsAddr)
	testutil.CheckFor(t, 20*time.Second, source+" seeded", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, bus.SourcesBucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, source+".state")
		if err != nil {
			return err
		}
		if !strings.Contains(string(e.Value()), `"seeded":true`) {
			return errors.New("not seeded yet")
		}
		return nil
	})
}

func writeToken(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stoken")
	if err := os.WriteFile(f, []byte(simulator.DefaultVPPToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func baseEnv(dataDir, natsAddr string) map[string]string {
	return map[string]string{"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": "warn",
		"ALLOW_INSECURE_HTTP": "true", "LEASE_TTL": "0"}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestVPP2EndToEnd: SOURCES=school:vpp2 with SCHOOL_VPP2_STOKEN_FILE runs
// against the simulator and reports each change of a v2 user, keyed by
// clientUserId, re-creation included.
func TestVPP2EndToEnd(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 6})
	api := newAPI(t, sim)
	dataDir, natsAddr := t.TempDir(), testutil.FreeAddr(t)
	if _, err := pollerapp.EnsureEmbeddedAuth(dataDir); err != nil {
		t.Fatal(err)
	}
	startPoller(t, with(baseEnv(dataDir, natsAddr), "SOURCES", "school:vpp2",
		"SCHOOL_VPP2_STOKEN_FILE", writeToken(t), "SCHOOL_VPP2_BASE_URL", api+"/mdm/v2",
		"SCHOOL_VPP2_INTERVAL", "100ms", "SCHOOL_VPP2_FULL_SYNC_INTERVAL", "1s"))
	seeded(t, dataDir, natsAddr, "school")
	trail := trailOf(t, dataDir, natsAddr)

	sim.VPP.Put(vpptest.User{UserID: 500, Email: "new@school.example", ClientUserIDStr: "client-500", Status: vpptest.StatusRegistered})
	u3, _ := sim.VPP.Get(3) // user3@test.com, Registered
	u3.Status, u3.ItsIDHash, u3.InviteCode, u3.InviteURL = vpptest.StatusAssociated, "h3=", "", ""
	sim.VPP.Put(u3)
	u1, _ := sim.VPP.Get(1) // clientUserIdStr 200006, Associated
	u1.Status = vpptest.StatusRetired
	sim.VPP.Put(u1)
	want := []string{
		"school user.associated user3@test.com",
		"school user.registered client-500",
		"school user.retired 200006",
	}
	testutil.CheckFor(t, 30*time.Second, "the three changes", func() error {
		if got := sorted(trail()); !slices.Equal(got, want) {
			return fmt.Errorf("stream %q, want %q", got, want)
		}
		return nil
	})
	// 200006 re-created: a new entry of the same clientUserId.
	sim.VPP.Put(vpptest.User{UserID: 501, Email: "user1@test.com", ClientUserIDStr: "200006", Status: vpptest.StatusRegistered})
	want = append(want, "school user.registered 200006")
	testutil.CheckFor(t, 30*time.Second, "the re-creation", func() error {
		if got := trail(); len(got) != 4 || got[3] != want[3] {
			return fmt.Errorf("stream %q, want %q last", got, want[3])
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // a full sync or more: nothing more
	if got := trail(); len(got) != 4 {
		t.Errorf("after more runs: stream %q, want the 4 events only", got)
	}
}

// TestVPP2MigrationFromVPP is the migration of SPEC §1.4 and docs/VPP2.md
// against one directory served on both APIs: a vpp source runs and
// reports; the location then moves to a vpp2 source under a new name,
// which seeds silently: not one event for the move. Later real changes
// are reported by vpp2. Reusing the vpp source's name for the vpp2 source
// is refused at start, changing nothing.
func TestVPP2MigrationFromVPP(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 8})
	api := newAPI(t, sim)
	dataDir, natsAddr := t.TempDir(), testutil.FreeAddr(t)
	if _, err := pollerapp.EnsureEmbeddedAuth(dataDir); err != nil {
		t.Fatal(err)
	}
	tok := writeToken(t)
	base := baseEnv(dataDir, natsAddr)

	// 1. The location on the legacy API, under the name school.
	old := startPoller(t, with(base, "SOURCES", "school:vpp", "SCHOOL_VPP_STOKEN_FILE", tok,
		"SCHOOL_VPP_BASE_URL", api+"/mdm", "SCHOOL_VPP_INTERVAL", "100ms", "SCHOOL_VPP_FULL_SYNC_INTERVAL", "300ms"))
	seeded(t, dataDir, natsAddr, "school")
	trail := trailOf(t, dataDir, natsAddr)
	u4, _ := sim.VPP.Get(4)
	u4.Status, u4.ItsIDHash, u4.InviteCode, u4.InviteURL = vpptest.StatusAssociated, "h4=", "", ""
	sim.VPP.Put(u4)
	testutil.CheckFor(t, 20*time.Second, "vpp reports the association", func() error {
		if got := trail(); !slices.Equal(got, []string{"school user.associated 4"}) {
			return fmt.Errorf("stream %q", got)
		}
		return nil
	})
	before := trail() // while the embedded server runs
	old.stop(t)

	// 2. The careless move: the same name, kind vpp2. Refused at start.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := pollerapp.Run(ctx, envconfig.MapLookuper(with(base, "SOURCES", "school:vpp2", "SCHOOL_VPP2_STOKEN_FILE", tok,
		"SCHOOL_VPP2_BASE_URL", api+"/mdm/v2", "SCHOOL_VPP2_INTERVAL", "100ms")), io.Discard)
	if !errors.Is(err, pollerapp.ErrKindChanged) || !strings.Contains(err.Error(), "new name") {
		t.Fatalf("reusing the name with kind vpp2: %v; want a refusal that says to use a new name", err)
	}

	// 3. The move as docs/VPP2.md says: vpp2 under a new name, vpp removed.
	startPoller(t, with(base, "SOURCES", "school-v2:vpp2", "SCHOOL_V2_VPP2_STOKEN_FILE", tok,
		"SCHOOL_V2_VPP2_BASE_URL", api+"/mdm/v2", "SCHOOL_V2_VPP2_INTERVAL", "100ms", "SCHOOL_V2_VPP2_FULL_SYNC_INTERVAL", "300ms"))
	seeded(t, dataDir, natsAddr, "school-v2")
	time.Sleep(time.Second) // several incremental and full runs
	if got := trail(); !slices.Equal(got, before) {
		t.Fatalf("the move published events: stream %q, was %q", got, before)
	}

	// 4. Later changes come from vpp2, keyed by clientUserId.
	u2, _ := sim.VPP.Get(2) // clientUserIdStr 200007
	u2.Status = vpptest.StatusRetired
	sim.VPP.Put(u2)
	want := append(slices.Clone(before), "school-v2 user.retired 200007")
	testutil.CheckFor(t, 20*time.Second, "vpp2 reports the retirement", func() error {
		if got := trail(); !slices.Equal(got, want) {
			return fmt.Errorf("stream %q, want %q", got, want)
		}
		return nil
	})
}

func sorted(s []string) []string { slices.Sort(s); return s }

// newAPI serves the simulator's APIs for the test and returns their URL.
func newAPI(t *testing.T, sim *simulator.Simulator) string {
	t.Helper()
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// A token Apple refuses (401 9601) stops the vpp2 source without further
// requests until its token file changes; then it resumes by itself.
func TestVPP2RefusedTokenStopsUntilFileChanges(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 3})
	api := newAPI(t, sim)
	dataDir, natsAddr := t.TempDir(), testutil.FreeAddr(t)
	if _, err := pollerapp.EnsureEmbeddedAuth(dataDir); err != nil {
		t.Fatal(err)
	}
	tok := writeToken(t)
	if err := os.WriteFile(tok, []byte("eyJ0b2tlbiI6Indyb25nLXRva2VuLTEyMzQ1IiwiZXhwRGF0ZSI6IjIwOTktMDEtMDFUMDA6MDA6MDAtMDgwMCIsIm9yZ05hbWUiOiJYIn0="), 0o600); err != nil {
		t.Fatal(err)
	}
	startPoller(t, with(baseEnv(dataDir, natsAddr), "SOURCES", "school:vpp2", "SCHOOL_VPP2_STOKEN_FILE", tok,
		"SCHOOL_VPP2_BASE_URL", api+"/mdm/v2", "SCHOOL_VPP2_INTERVAL", "100ms"))
	testutil.CheckFor(t, 20*time.Second, "the refused token tried", func() error {
		if sim.VPP2.Requests() == 0 {
			return errors.New("no request yet")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	n := sim.VPP2.Requests()
	time.Sleep(time.Second) // ten intervals
	if got := sim.VPP2.Requests(); got != n {
		t.Fatalf("%d more requests with a refused token; the source must stop", got-n)
	}
	if err := os.WriteFile(tok, []byte(simulator.DefaultVPPToken), 0o600); err != nil {
		t.Fatal(err)
	}
	seeded(t, dataDir, natsAddr, "school") // the poller checks token files every 10s
}
