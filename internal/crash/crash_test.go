// Package crash breaks the poller on purpose: it builds the real binary,
// kills it with SIGKILL at random moments while it publishes hundreds of
// events, and checks that the stream ends up with every expected event
// exactly once and the state matches the directory.
package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

var pollerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rollcall-crash-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pollerBin = filepath.Join(dir, "poller")
	build := exec.Command("go", "build", "-o", pollerBin, "github.com/rollcall/rollcall/cmd/poller")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "crash tests: building the poller binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one poller process.
type proc struct {
	cmd *exec.Cmd
	log *os.File
}

func start(t *testing.T, env map[string]string, logPath string) *proc {
	t.Helper()
	cmd := exec.Command(pollerBin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &proc{cmd: cmd, log: f}
}

// kill sends SIGKILL: no deferred function, no graceful stop.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.log.Close()
}

// matches reports how the KV differs from the simulator's directory.
func matches(ctx context.Context, kv jetstream.KeyValue, sim *simulator.Simulator) error {
	vppState, err := state.NewUsers(kv, "vpp").Load(ctx)
	if err != nil {
		return err
	}
	for _, u := range sim.VPP.Users() {
		p, ok := vppState[fmt.Sprint(u.UserID)]
		if !ok || !strings.EqualFold(p.User.Status, u.Status) {
			return fmt.Errorf("vpp user %d: state %+v, directory %s", u.UserID, p.User.Status, u.Status)
		}
	}
	veeamState, err := state.NewUsers(kv, "veeam").Load(ctx)
	if err != nil {
		return err
	}
	live := map[string]veeamtest.User{}
	for _, u := range sim.Veeam.Users() {
		live[u.InstanceUID] = u
		p, ok := veeamState[u.InstanceUID]
		if !ok || !strings.EqualFold(p.User.Role, u.Role) || !strings.EqualFold(p.User.Status, u.Status) {
			return fmt.Errorf("veeam user %s: state %s/%s, directory %s/%s", u.UserName, p.User.Role, p.User.Status, u.Role, u.Status)
		}
	}
	for id, p := range veeamState {
		if _, ok := live[id]; !ok && p.User.Status != events.StatusRemoved {
			return fmt.Errorf("veeam user %s removed from the directory but %s in state", id, p.User.Status)
		}
	}
	return nil
}

// streamIDs returns the number of messages on the stream and their
// distinct Nats-Msg-Id values.
func streamIDs(t *testing.T, js jetstream.JetStream) (int, map[string]int) {
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
	ids := map[string]int{}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.Header.Get(jetstream.MsgIDHeader)]++
		n++
	}
	return n, ids
}

var roles = []string{"CompanyOwner", "CompanyAdministrator", "CompanyLocationUser"}

// mutate makes one round of changes, each yielding exactly one event, and
// returns how many.
func mutate(sim *simulator.Simulator, round int, rng *rand.Rand) int {
	n := 0
	users := sim.Veeam.Users()
	rng.Shuffle(len(users), func(i, j int) { users[i], users[j] = users[j], users[i] })
	for i, u := range users {
		switch {
		case i < 150: // role change
			for old := u.Role; strings.EqualFold(u.Role, old); {
				u.Role = roles[rng.IntN(len(roles))]
			}
			sim.Veeam.Put(u)
		case i < 155: // removal
			sim.Veeam.Remove(u.InstanceUID)
		default:
			continue
		}
		n++
	}
	for i := range 5 { // registration
		sim.Veeam.Put(veeamtest.User{InstanceUID: fmt.Sprintf("ffffffff-%04d-4000-8000-%012d", round, i), UserName: fmt.Sprintf("new-%d-%d", round, i), Status: "Enabled", Role: "CompanyLocationUser"})
		n++
	}
	changed := 0
	for _, u := range sim.VPP.Users() {
		if changed == 60 {
			break
		}
		switch u.Status {
		case vpptest.StatusRegistered:
			u.Status = vpptest.StatusAssociated
		case vpptest.StatusAssociated:
			u.Status = vpptest.StatusRetired
		default:
			continue
		}
		sim.VPP.Put(u)
		changed++
	}
	return n + changed
}

func TestCrashLoop(t *testing.T) {
	const rounds = 7
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	sim := simulator.New(simulator.Config{Users: 400, Seed: 42})
	sim.VPP.SetBatchSize(50)
	api := httptest.NewServer(sim.Handler())
	defer api.Close()
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "HTTP_ADDR": "", "LOG_LEVEL": "warn", "LEASE_TTL": "0", "ALLOW_INSECURE_HTTP": "true",
		"VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": simulator.DefaultVPPToken, "VPP_INTERVAL": "50ms", "VPP_FULL_SYNC_INTERVAL": "1s",
		"VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": simulator.DefaultVeeamToken, "VEEAM_INTERVAL": "50ms", "VEEAM_PAGE_SIZE": "50",
	}
	logPath := filepath.Join(t.TempDir(), "poller.log")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("poller logs:\n%s", b)
		}
	}()
	ctx := context.Background()
	var kv jetstream.KeyValue
	converge := func() {
		p := start(t, env, logPath)
		defer p.kill()
		testutil.CheckFor(t, 30*time.Second, "state to match the directory", func() error {
			if kv == nil {
				var err error
				if kv, err = js.KeyValue(ctx, bus.UsersBucket); err != nil {
					return err
				}
			}
			return matches(ctx, kv, sim)
		})
	}
	converge() // seed silently

	rng := rand.New(rand.NewPCG(7, 11))
	kills, expected := 0, 0
	for round := 1; round <= rounds; round++ {
		expected += mutate(sim, round, rng)
		for range 2 + rng.IntN(3) {
			p := start(t, env, logPath)
			time.Sleep(time.Duration(20+rng.IntN(300)) * time.Millisecond)
			p.kill()
			kills++
		}
		converge()
		kills++
	}
	if kills < 20 {
		t.Fatalf("only %d kills", kills)
	}
	msgs, ids := streamIDs(t, js)
	for id, n := range ids {
		if n > 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	if msgs != len(ids) || msgs != expected {
		t.Fatalf("after %d kills: %d messages, %d distinct ids, %d expected changes", kills, msgs, len(ids), expected)
	}
	t.Logf("survived %d SIGKILLs: %d events checked, 0 lost, 0 doubled", kills, expected)
}

// counter counts the requests one replica makes.
type counter struct {
	h http.Handler
	n atomic.Int64
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.h.ServeHTTP(w, r)
}

// Two replicas against one source: the one with the lease polls; killed
// with SIGKILL (no release), it is replaced within two lease periods and no
// event is doubled.
func TestKilledReplicaIsReplaced(t *testing.T) {
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	sim := simulator.New(simulator.Config{Users: 50, Seed: 3})
	var reqs [2]*counter
	var urls [2]string
	for i := range reqs {
		reqs[i] = &counter{h: sim.Handler()}
		srv := httptest.NewServer(reqs[i])
		defer srv.Close()
		urls[i] = srv.URL
	}
	const ttl = 2 * time.Second
	procs := make([]*proc, 2)
	logDir := t.TempDir()
	for i := range procs {
		procs[i] = start(t, map[string]string{
			"NATS_URL": ns.ClientURL(), "HTTP_ADDR": "", "LOG_LEVEL": "info", "LEASE_TTL": ttl.String(), "POLLER_ID": fmt.Sprintf("replica-%d", i), "ALLOW_INSECURE_HTTP": "true",
			"VEEAM_BASE_URL": urls[i], "VEEAM_TOKEN": simulator.DefaultVeeamToken, "VEEAM_INTERVAL": "50ms",
		}, filepath.Join(logDir, fmt.Sprintf("replica-%d.log", i)))
		defer procs[i].kill()
	}
	// Find the active replica: the one whose API requests grow.
	active := -1
	testutil.CheckFor(t, 20*time.Second, "one replica polling", func() error {
		a, b := reqs[0].n.Load(), reqs[1].n.Load()
		switch {
		case a > 3 && b == 0:
			active = 0
		case b > 3 && a == 0:
			active = 1
		case a > 0 && b > 0:
			t.Fatalf("both replicas polled: %d and %d requests", a, b)
		default:
			return fmt.Errorf("requests %d/%d", a, b)
		}
		return nil
	})
	standby := 1 - active
	users := sim.Veeam.Users()
	for _, u := range users[:10] {
		u.Role = "ResellerInvoiceAuditor" // a role the simulator never assigns: each is a change
		sim.Veeam.Put(u)
	}
	testutil.CheckFor(t, 10*time.Second, "ten role changes", func() error {
		if n, _ := streamIDs(t, js); n != 10 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	if n := reqs[standby].n.Load(); n != 0 {
		t.Fatalf("the standby replica made %d requests", n)
	}
	procs[active].kill()
	killed := time.Now()
	testutil.CheckFor(t, 3*ttl, "the standby to take over", func() error {
		if reqs[standby].n.Load() == 0 {
			return fmt.Errorf("no request yet")
		}
		return nil
	})
	took := time.Since(killed)
	if took > 2*ttl {
		t.Fatalf("takeover took %v, more than two lease periods (%v)", took, 2*ttl)
	}
	for _, u := range users[10:15] {
		sim.Veeam.Remove(u.InstanceUID)
	}
	testutil.CheckFor(t, 10*time.Second, "five removals", func() error {
		if n, _ := streamIDs(t, js); n != 15 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	msgs, ids := streamIDs(t, js)
	if msgs != len(ids) {
		t.Fatalf("%d messages but %d distinct ids", msgs, len(ids))
	}
	t.Logf("takeover after SIGKILL in %v (lease %v)", took.Round(10*time.Millisecond), ttl)
}
