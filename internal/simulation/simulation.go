// Package simulation checks rollcall's guarantees (SPEC §6) against an
// oracle, the way FoundationDB and TigerBeetle test themselves: a seed
// decides a schedule of directory changes (some between the pages of one
// sweep), API faults, poller and notifier crashes, NATS restarts and sink
// outages; the real poller, the real embedded NATS server and the real
// notifier run through it against the fakes (vpptest, veeamtest) and a
// webhook receiver; and an oracle that recorded the directories' true
// history checks what ended up on the stream, in the KV and at the sink.
//
// The same seed gives the same schedule (Schedule.String prints it). The
// timing of a run is real, so two runs of one seed interleave differently;
// that is what explores the interleavings. A failing schedule prints its
// seed and the command that runs it again.
package simulation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Tokens of the fakes.
const (
	vppToken      = "c2ltdWxhdGlvbi1zdG9rZW4="
	veeamToken    = "simulation-api-key"
	veeamUser     = "poller"
	veeamPassword = "simulation-password"
)

// Options tune a run of one schedule.
type Options struct {
	// PollerBin is the poller binary for schedules that SIGKILL a poller
	// process; empty turns those schedules into in-process crashes.
	PollerBin string
	// Dir holds the schedule's NATS store; empty makes a temporary one.
	Dir string
	// Settle bounds how long the pipeline may take to catch up once the
	// schedule is over; default 60s.
	Settle time.Duration
}

// Report is what one schedule did and what the oracle found.
type Report struct {
	Seed       uint64
	Schedule   *Schedule
	Faults     map[Kind]int // steps carried out, by kind
	Changes    int          // directory changes applied
	Skipped    int          // changes that no longer applied when their time came
	Events     int          // messages on the stream
	Deliveries int          // webhook requests the sink answered 2xx
	DeadLetter int
	Runs       int // complete runs the oracle checked
	Violations []string
	Duration   time.Duration
	Logs       string // the services' warnings and errors, for a failing schedule
	FullLog    string // every line the services logged, for a failing schedule
}

// Failed reports whether the oracle found a violation.
func (r Report) Failed() bool { return len(r.Violations) > 0 }

// ReplayCommand is the one-line command that runs the schedule again.
func (r Report) ReplayCommand() string {
	return fmt.Sprintf("go test ./internal/simulation -run 'TestSimulation$' -count=1 -v -sim.seed=%d", r.Seed)
}

func (r Report) String() string {
	var b strings.Builder
	status := "ok"
	if r.Failed() {
		status = fmt.Sprintf("FAILED (%d violations)", len(r.Violations))
	}
	fmt.Fprintf(&b, "seed %d: %s in %s; %d changes (%d skipped), %d events, %d deliveries, %d dead letters, %d complete runs checked",
		r.Seed, status, r.Duration.Round(time.Millisecond), r.Changes, r.Skipped, r.Events, r.Deliveries, r.DeadLetter, r.Runs)
	for _, v := range r.Violations {
		b.WriteString("\n  violation: " + v)
	}
	if r.Failed() {
		b.WriteString("\n  replay: " + r.ReplayCommand())
	}
	return b.String()
}

// Run runs the schedule of seed and checks it. An error means the harness
// itself could not run (no port, no disk); a schedule that breaks a
// guarantee returns a Report with Violations.
func Run(ctx context.Context, seed uint64, opts Options) (Report, error) {
	s := NewSchedule(seed, opts.PollerBin != "")
	start := time.Now()
	rep := Report{Seed: seed, Schedule: s, Faults: map[Kind]int{}}
	w, err := newWorld(s, opts)
	if err != nil {
		return rep, err
	}
	defer w.close()
	if err := w.start(ctx); err != nil {
		return rep, err
	}
	w.play(ctx)
	settled := w.settle(ctx)
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	o, err := w.observe(ctx)
	if err != nil {
		return rep, fmt.Errorf("read what the pipeline did: %w", err)
	}
	rep.Violations = w.oracle(o)
	w.mu.Lock()
	rep.Violations = append(slices.Clone(w.harnessViolations), rep.Violations...)
	w.mu.Unlock()
	if settled != nil {
		rep.Violations = append([]string{"did not settle: " + settled.Error()}, rep.Violations...)
		// Where everything is stuck, for the log.
		buf := make([]byte, 4<<20)
		fmt.Fprintf(w.logs, "simulation: goroutines when settling failed:\n%s\n", buf[:runtime.Stack(buf, true)])
	}
	rep.Faults = w.faultCounts()
	rep.Changes, rep.Skipped = w.dir.applied, w.dir.skipped
	rep.Events, rep.Deliveries, rep.DeadLetter, rep.Runs = len(o.stream), w.rcv.okCount(), len(o.deadLetters), w.checkedRuns
	rep.Duration = time.Since(start)
	if rep.Failed() {
		rep.Logs = problems(w.logs.String(), 60)
		rep.FullLog = w.logs.String()
	}
	return rep, nil
}

// world is one schedule's running system.
type world struct {
	s    *Schedule
	opts Options
	dir  *directory
	logs *syncbuf.Buffer
	log  *slog.Logger

	dataDir string
	ownDir  bool
	natsURL string
	port    int
	vppSrv  *httptest.Server
	veeSrv  *httptest.Server
	rcv     *receiver
	rcvSrv  *httptest.Server

	mu          sync.Mutex
	ns          *server.Server
	poller      *pollerProc
	notifier    *notifierProc
	crashAt     string // armed poller fault point
	settling    bool   // the schedule is over: no more crashes
	crashGap    time.Duration
	faults      map[Kind]int
	runs        []runObs
	checkedRuns int
	// harnessViolations are what the harness saw itself.
	harnessViolations []string
	obsNC             *nats.Conn
	obsJS             jetstream.JetStream
	wg                sync.WaitGroup
}

// runObs is one run of a source that listed the directory, as the
// poller reported it.
type runObs struct {
	source     string
	start, end time.Time // of its listing
	complete   bool
	committed  bool // it ended without an error
	seeded     bool // it was the source's first, silent, committed snapshot
}

func newWorld(s *Schedule, opts Options) (*world, error) {
	if opts.Settle <= 0 {
		opts.Settle = 60 * time.Second
	}
	w := &world{s: s, opts: opts, logs: &syncbuf.Buffer{}, faults: map[Kind]int{}}
	w.log = slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w.dataDir, w.ownDir = opts.Dir, opts.Dir == ""
	if w.ownDir {
		d, err := os.MkdirTemp("", "rollcall-sim-")
		if err != nil {
			return nil, err
		}
		w.dataDir = d
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	w.port = port
	w.dir = newDirectory(s, vppToken, veeamToken)
	if s.VeeamLogin {
		w.dir.veeam.SetPassword(veeamUser, veeamPassword)
	}
	apple := http.NewServeMux()
	apple.Handle("/mdm/", w.dir.vpp)
	apple.Handle("/mdm/v2/", w.dir.vpp2)
	w.vppSrv = httptest.NewServer(apple)
	w.veeSrv = httptest.NewServer(w.dir.veeam)
	w.rcv = &receiver{}
	w.rcvSrv = httptest.NewServer(w.rcv)
	return w, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (w *world) start(ctx context.Context) error {
	// The port was free when picked, but another process (a test running
	// beside) may have taken it since; the first start may pick another,
	// the restarts after it need this one.
	for try := 1; ; try++ {
		err := w.startNATS()
		var le *natsutil.ListenError
		if err == nil {
			break
		}
		if !errors.As(err, &le) || try == 5 {
			return err
		}
		if w.port, err = freePort(); err != nil {
			return err
		}
	}
	nc, err := nats.Connect(w.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return err
	}
	w.obsNC = nc
	if w.obsJS, err = jetstream.New(nc); err != nil {
		return err
	}
	if err := w.startPoller(ctx); err != nil {
		return err
	}
	return w.startNotifier(ctx)
}

func (w *world) startNATS() error {
	ns, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{StoreDir: filepath.Join(w.dataDir, "nats"), Listen: "127.0.0.1:" + strconv.Itoa(w.port)}, nil)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.ns = ns
	w.natsURL = ns.ClientURL()
	w.mu.Unlock()
	return nil
}

func (w *world) stopNATS() {
	w.mu.Lock()
	ns := w.ns
	w.ns = nil
	w.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// play carries out the schedule's steps at their times.
func (w *world) play(ctx context.Context) {
	begin := time.Now()
	for _, st := range w.s.Steps {
		if d := time.Until(begin.Add(st.At)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		w.do(ctx, st)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(begin.Add(w.s.Length))):
	}
}

func (w *world) count(k Kind) {
	w.mu.Lock()
	w.faults[k]++
	w.mu.Unlock()
}

func (w *world) faultCounts() map[Kind]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.faults)
}

// do carries out one step.
func (w *world) do(ctx context.Context, st Step) {
	w.count(st.Kind)
	switch st.Kind {
	case KindChange:
		w.dir.apply(st)
	case KindChangeMidSweep:
		w.betweenPages(st)
	case KindPollerCrash:
		w.mu.Lock()
		w.crashAt, w.crashGap = st.Point, st.D
		w.mu.Unlock()
	case KindPollerKill:
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.restartPoller(ctx, st.D)
		}()
	case KindPollerReplica:
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.secondReplica(ctx, st.D, st.N == 0)
		}()
	case KindNotifierCrash:
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.crashNotifier(ctx, st.D)
		}()
	case KindNATSRestart:
		w.stopNATS()
		time.Sleep(st.D)
		if err := w.startNATS(); err != nil {
			w.log.Error("simulation: restarting NATS", "err", err)
		}
	case KindSinkOutage:
		w.rcv.down(st.D)
	case KindSinkUserFailure:
		w.rcv.failUser(w.dir.userKey(st.API, st.User), st.D)
	case KindPoisonMessage:
		w.poison(ctx, st.N)
	default:
		w.apiFault(st)
	}
}

// betweenPages arms a change to happen just before the given page of the
// next Veeam sweep is served.
func (w *world) betweenPages(st Step) {
	var once sync.Once
	w.dir.veeam.SetBeforePage(func(page int) {
		if page != st.Page {
			return
		}
		once.Do(func() {
			w.dir.apply(st)
			w.dir.veeam.SetBeforePage(nil)
		})
	})
}

// settle ends every fault, makes sure every part runs, and waits until
// the pipeline has caught up with the directory: the KV matches it, the
// sink's consumer has nothing pending, and a few more complete runs change
// nothing.
func (w *world) settle(ctx context.Context) error {
	w.mu.Lock()
	w.crashAt, w.settling = "", true
	w.mu.Unlock()
	if err := waitGroup(&w.wg); err != nil {
		return err
	}
	w.dir.veeam.SetBeforePage(nil)
	w.dir.vpp.ClearFaults()
	w.dir.veeam.ClearFaults()
	w.rcv.down(0)
	w.rcv.mu.Lock()
	w.rcv.failing = nil
	w.rcv.mu.Unlock()
	w.mu.Lock()
	up := w.ns != nil
	w.mu.Unlock()
	if !up {
		if err := w.startNATS(); err != nil {
			return err
		}
	}
	if err := w.ensureRunning(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(w.opts.Settle)
	var last error
	for stable := 0; stable < 2; {
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", w.opts.Settle, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3*w.s.FullSync + w.s.Interval):
		}
		if last = w.caughtUp(ctx); last != nil {
			stable = 0
			continue
		}
		stable++
	}
	return nil
}

// caughtUp tells why the pipeline has not caught up yet, or nil.
func (w *world) caughtUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := w.readKV(ctx)
	if err != nil {
		return err
	}
	if bad := kvMismatches(kv, w.dir.current()); len(bad) > 0 {
		return fmt.Errorf("users bucket differs from the directory: %s", strings.Join(first(bad, 5), "; "))
	}
	c, err := w.obsJS.Consumer(ctx, streamName, sinkName)
	if err != nil {
		return fmt.Errorf("sink consumer: %w", err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("sink consumer: %w", err)
	}
	if ci.NumPending > 0 || ci.NumAckPending > 0 {
		return fmt.Errorf("sink consumer: %d pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
	}
	return nil
}

func first(s []string, n int) []string {
	slices.Sort(s)
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// fail records a violation the harness saw itself (a service that does
// not stop), with where everything is stuck.
func (w *world) fail(msg string) {
	w.mu.Lock()
	w.harnessViolations = append(w.harnessViolations, msg)
	w.mu.Unlock()
	buf := make([]byte, 4<<20)
	fmt.Fprintf(w.logs, "simulation: %s; goroutines:\n%s\n", msg, buf[:runtime.Stack(buf, true)])
}

func (w *world) close() {
	if err := waitGroup(&w.wg); err != nil {
		w.fail(err.Error())
	}
	w.mu.Lock()
	p, n := w.poller, w.notifier
	w.poller, w.notifier = nil, nil
	w.mu.Unlock()
	if p != nil {
		if err := p.stop(); err != nil {
			w.fail(err.Error())
		}
	}
	if n != nil {
		if err := n.stop(false); err != nil {
			w.fail(err.Error())
		}
	}
	if w.obsNC != nil {
		w.obsNC.Close()
	}
	w.stopNATS()
	w.vppSrv.Close()
	w.veeSrv.Close()
	w.rcvSrv.Close()
	if w.ownDir {
		_ = os.RemoveAll(w.dataDir)
	}
}

// problems keeps the warning and error lines of the services' logs.
func problems(log string, n int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "simulation:") {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = append([]string{fmt.Sprintf("… %d lines before", len(out)-n)}, out[len(out)-n:]...)
	}
	return strings.Join(out, "\n")
}

// receiver is the webhook endpoint: it records every request and answers
// 204, or 503 while it is down.
type receiver struct {
	mu        sync.Mutex
	downUntil time.Time
	failing   map[string]time.Time // "<source> <user id>" → until when it fails
	got       []delivery
}

// delivery is one accepted webhook request.
type delivery struct {
	at                  time.Time
	id, source, subject string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if time.Now().Before(rc.downUntil) {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	subject, _ := url.PathUnescape(r.Header.Get("ce-subject"))
	source := strings.TrimPrefix(r.Header.Get("ce-source"), "urn:rollcall:source:")
	if time.Now().Before(rc.failing[key(source, subject)]) {
		http.Error(w, "this user fails", http.StatusServiceUnavailable)
		return
	}
	rc.got = append(rc.got, delivery{at: time.Now(), id: r.Header.Get("ce-id"), source: r.Header.Get("ce-source"), subject: r.Header.Get("ce-subject")})
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) failUser(k string, d time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.failing == nil {
		rc.failing = map[string]time.Time{}
	}
	rc.failing[k] = time.Now().Add(d)
}

func (rc *receiver) down(d time.Duration) {
	rc.mu.Lock()
	rc.downUntil = time.Now().Add(d)
	rc.mu.Unlock()
}

func (rc *receiver) okCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

var errCrash = errors.New("simulated crash")

// waitGroup waits for the crash and restart goroutines, boundedly.
func waitGroup(wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return waitStop(done, "restarted services")
}
