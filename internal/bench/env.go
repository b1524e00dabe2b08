package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/simulator"
)

// Sim is a running simulator: both directory APIs and the admin API under URL.
type Sim struct {
	URL        string
	VPPToken   string
	VeeamToken string
	// Where says where it runs ("in process" or "child process pid N").
	Where string
	stop  func()
}

// Stop ends the simulator.
func (s *Sim) Stop() {
	if s.stop != nil {
		s.stop()
	}
}

// Starter starts a simulator holding users generated users per API.
type Starter func(ctx context.Context, users int) (*Sim, error)

// InProcess runs the simulator in this process. Its CPU time and memory
// then count in every figure and floor alike; ChildProcess keeps them out.
func InProcess(ctx context.Context, users int) (*Sim, error) {
	sim := newSimulator(users, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Sim{
		URL: "http://" + ln.Addr().String(), VPPToken: simulator.DefaultVPPToken, VeeamToken: simulator.DefaultVeeamToken,
		Where: "in process",
		stop: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		},
	}, nil
}

// newSimulator is the simulator the benchmark measures against. Its API
// v2 serves pages of 500 (Apple's are "several hundred") and allows as
// many requests a second as the client makes: Apple's limit (15 a second
// in its example) would make a listing of a million users take 13 minutes
// of waiting, which is Apple's pace, not rollcall's cost.
func newSimulator(users int, seed int64) *simulator.Simulator {
	sim := simulator.New(simulator.Config{Users: users, Seed: seed})
	sim.VPP2.SetPageSize(500)
	sim.VPP2.SetMaxRequestPerSecond(1_000_000)
	return sim
}

// ChildProcess starts the simulator as "<path> serve" in a process of its
// own, so that serving the pages costs the measured process nothing: the
// CPU time and memory figures are then the poller's (and the embedded NATS
// server's) alone, as they would be against the real APIs. path is the
// simulator's binary, or a program that passes its own path and serves
// with ServeChild when IsChild (cmd/bench), so that it needs no other
// binary and no Go toolchain.
func ChildProcess(path string) Starter {
	return func(ctx context.Context, users int) (*Sim, error) {
		c, err := startChild(ctx, path, childSimulator, "simulator",
			[]string{"serve", "-addr", "127.0.0.1:0", "-users", strconv.Itoa(users), "-churn", "0", "-seed", "1"},
			"SIM_VPP_STOKEN="+simulator.DefaultVPPToken, "SIM_VEEAM_TOKEN="+simulator.DefaultVeeamToken)
		if err != nil {
			return nil, err
		}
		return &Sim{URL: c.url, VPPToken: simulator.DefaultVPPToken, VeeamToken: simulator.DefaultVeeamToken,
			Where: fmt.Sprintf("child process (pid %d)", c.pid), stop: c.stop}, nil
	}
}

// child is a process of this program's that serves something (the
// simulator, a NATS server) at url.
type child struct {
	url  string
	pid  int
	stop func()
}

// startChild starts path with args and the child marker set to role, and
// waits for its announcement "<what> listening on <url>" on stderr.
func startChild(ctx context.Context, path, role, what string, args []string, env ...string) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	done := make(chan struct{})
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	urlc := make(chan string, 1)
	prefix := what + " listening on "
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				select {
				case urlc <- strings.TrimSpace(rest):
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case u := <-urlc:
		return &child{url: u, pid: cmd.Process.Pid, stop: stop}, nil
	case <-done:
		return nil, fmt.Errorf("%s exited before listening", what)
	case <-time.After(10 * time.Minute):
		stop()
		return nil, fmt.Errorf("%s did not start within 10 minutes", what)
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
}

// childEnv marks the process ChildProcess starts; the simulator's binary
// ignores it ("serve" is its own command).
const (
	childEnv       = "ROLLCALL_BENCH_CHILD"
	childSimulator = "simulator"
	childNATS      = "nats"
)

// IsChild reports whether this process is a simulator or a NATS server
// that the benchmark started (ChildProcess, Config.NATSChild): it should
// then call ServeChild and nothing else.
func IsChild() bool {
	v := os.Getenv(childEnv)
	return v == childSimulator || v == childNATS
}

// ServeChild is the child's side of ChildProcess and Config.NATSChild: it
// serves the simulator as args ("serve -addr A -users N -churn D -seed S")
// say, or a NATS server ("nats -store DIR"), announces its URL on stderr
// as the simulator's serve does, and stops when ctx ends (the parent sends
// an interrupt).
func ServeChild(ctx context.Context, args []string, stderr io.Writer) error {
	if os.Getenv(childEnv) == childNATS {
		return serveNATS(ctx, args, stderr)
	}
	if len(args) == 0 || args[0] != "serve" {
		return fmt.Errorf("simulator child: want serve and its flags, got %q", args)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "127.0.0.1:0", "")
	users := fs.Int("users", 0, "")
	churn := fs.Duration("churn", 0, "")
	seed := fs.Int64("seed", 1, "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("simulator child: bad flags %q: %v", args[1:], err)
	}
	sim := newSimulator(*users, *seed)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if *churn > 0 {
		go sim.Run(ctx, *churn, func(string) {})
	}
	fmt.Fprintf(stderr, "simulator listening on http://%s\n", ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// serveNATS is the NATS child: the embedded server the poller would start
// (natsutil.StartEmbedded), its store in the directory -store names.
func serveNATS(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	store := fs.String("store", "", "")
	if len(args) == 0 || args[0] != "nats" {
		return fmt.Errorf("nats child: want nats and its flags, got %q", args)
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || *store == "" {
		return fmt.Errorf("nats child: bad flags %q: %v", args[1:], err)
	}
	ns, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{StoreDir: *store, Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "nats listening on %s\n", ns.ClientURL())
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// natsEnv is a NATS server with a temporary store, embedded in this
// process or in a child process of its own, and the poller's stream and
// buckets on it.
type natsEnv struct {
	dir string
	url string
	// where says where the server runs, for the progress lines.
	where string
	// childPID is the server's process when it runs in a child, else 0.
	childPID int
	stop     func()
	nc       *nats.Conn
	js       jetstream.JetStream
	h        *bus.Handles
	// attempted counts, from a subscription of its own, every message
	// published to the subjects a poller writes (KV buckets, object store,
	// event stream), stored or not.
	attempted atomic.Uint64
	mon       *nats.Conn
}

// startNATS starts the server: in a child process of exe when exe is set,
// so that the measured process holds the poller (or notifier) alone, as
// it does beside a NATS server of its own; else in this process.
func startNATS(ctx context.Context, tmp, exe string) (*natsEnv, error) {
	dir, err := os.MkdirTemp(tmp, "rollcall-bench-")
	if err != nil {
		return nil, err
	}
	e := &natsEnv{dir: dir}
	store := filepath.Join(dir, "nats")
	if exe != "" {
		c, err := startChild(ctx, exe, childNATS, "nats", []string{"nats", "-store", store})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		e.url, e.stop, e.childPID = c.url, c.stop, c.pid
		e.where = fmt.Sprintf("child process (pid %d)", c.pid)
	} else {
		ns, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{StoreDir: store, Listen: "127.0.0.1:0"}, nil)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		e.url, e.where = ns.ClientURL(), "in process"
		e.stop = func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	}
	if err := e.connect(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// connect opens the benchmark's connections: the one the poller's
// handles use and the monitor that counts what is published.
func (e *natsEnv) connect(ctx context.Context) error {
	var err error
	if e.nc, err = nats.Connect(e.url, nats.Name("rollcall-bench")); err != nil {
		return err
	}
	// As the poller connects (internal/app/pollerapp).
	if e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncTimeout(3*time.Second)); err != nil {
		return err
	}
	if e.h, err = bus.Ensure(ctx, e.js, bus.Config{}); err != nil {
		return err
	}
	if e.mon, err = nats.Connect(e.url, nats.Name("rollcall-bench-monitor")); err != nil {
		return err
	}
	for _, subj := range []string{"$KV.>", "$O.>", bus.EventsSubjects} {
		if _, err := e.mon.Subscribe(subj, func(*nats.Msg) { e.attempted.Add(1) }); err != nil {
			return err
		}
	}
	return e.mon.Flush()
}

func (e *natsEnv) close() {
	if e.mon != nil {
		e.mon.Close()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	if e.stop != nil {
		e.stop()
	}
	os.RemoveAll(e.dir)
}

// serverCPU is the NATS child's user plus system CPU time so far
// (/proc/<pid>/stat), or 0 when the server runs in this process (its CPU
// is then in cpuTime) or the figure is unavailable.
func (e *natsEnv) serverCPU() time.Duration {
	if e.childPID == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.childPID))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis (utime and stime are the 14th
	// and 15th fields, the 12th and 13th after it).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	const ticks = 100 // USER_HZ, 100 on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// serverPeakRSS is the NATS child's peak resident set so far (VmHWM), or
// 0 when the server runs in this process or the figure is unavailable.
func (e *natsEnv) serverPeakRSS() uint64 {
	if e.childPID == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.childPID))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// writeCount is what the server stored: the last sequence of every stream
// of the account, summed (a KV put, delete or purge and an object chunk
// each take one), with the per-stream figures.
type writeCount struct {
	stored    uint64
	perStream map[string]uint64
	attempted uint64
}

func (e *natsEnv) writes(ctx context.Context) (writeCount, error) {
	// Let the monitor subscription see everything published so far.
	if err := e.nc.Flush(); err != nil {
		return writeCount{}, err
	}
	if err := e.mon.Flush(); err != nil {
		return writeCount{}, err
	}
	w := writeCount{perStream: map[string]uint64{}, attempted: e.attempted.Load()}
	streams := e.js.ListStreams(ctx)
	for info := range streams.Info() {
		w.stored += info.State.LastSeq
		w.perStream[info.Config.Name] = info.State.LastSeq
	}
	if err := streams.Err(); err != nil {
		return writeCount{}, fmt.Errorf("count the stored messages: %w", err)
	}
	return w, nil
}

// since is w minus an earlier count.
func (w writeCount) since(before writeCount) writeCount {
	d := writeCount{stored: w.stored - before.stored, attempted: w.attempted - before.attempted, perStream: map[string]uint64{}}
	for k, v := range w.perStream {
		if n := v - before.perStream[k]; n > 0 {
			d.perStream[k] = n
		}
	}
	return d
}

func (w writeCount) String() string {
	if w.stored == 0 && w.attempted == 0 {
		return "none"
	}
	var parts []string
	for k, v := range w.perStream {
		parts = append(parts, fmt.Sprintf("%s +%d", k, v))
	}
	return fmt.Sprintf("stored %d (%s), published %d", w.stored, strings.Join(parts, ", "), w.attempted)
}

// admin talks to the simulator's admin API.
type admin struct {
	base string
	hc   *http.Client
}

func newAdmin(base string) *admin {
	return &admin{base: base, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
}

func (a *admin) do(ctx context.Context, method, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("simulator admin %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
