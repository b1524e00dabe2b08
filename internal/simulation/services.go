package simulation

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
	"github.com/rollcall/rollcall/pkg/events"
)

// Names on the bus.
const (
	streamName = bus.EventsStream
	sinkName   = "webhook"
)

// Client settings: short enough that a schedule of a few seconds sees
// retries, timeouts and backoff, and that its waits (Retry-After of a
// second) do not dominate it.
var (
	fastBackoff   = httpx.Backoff{Base: 5 * time.Millisecond, Max: 40 * time.Millisecond}
	clientTimeout = 400 * time.Millisecond
	slowAnswer    = 600 * time.Millisecond // beyond clientTimeout
)

// connect opens a connection that reconnects quickly after a NATS restart.
func (w *world) connect(name string) (*nats.Conn, error) {
	return nats.Connect(w.natsURL, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Timeout(2*time.Second))
}

// pollerProc is one incarnation of the poller: in this process, or a
// child process that is killed with SIGKILL.
type pollerProc struct {
	cancel context.CancelFunc
	done   chan struct{}
	nc     *nats.Conn
	cmd    *exec.Cmd
}

// stop ends the incarnation: a cancelled context for one in this process
// (its running commits finish within the poller's grace), SIGKILL for a
// child process.
func (p *pollerProc) stop() error {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return nil
	}
	p.cancel()
	defer p.nc.Close()
	return waitStop(p.done, "poller")
}

// stopBound is how long a service may take to stop (SPEC §3.1 asks 10s of
// the poller).
const stopBound = 15 * time.Second

func waitStop(done <-chan struct{}, what string) error {
	select {
	case <-done:
		return nil
	case <-time.After(stopBound):
		return fmt.Errorf("the %s did not stop within %s of being asked to", what, stopBound)
	}
}

func (w *world) startPoller(ctx context.Context) error {
	var (
		p   *pollerProc
		err error
	)
	if w.s.Process {
		p, err = w.startPollerProcess()
	} else {
		p, err = w.startPollerHere(ctx)
	}
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.poller = p
	w.mu.Unlock()
	return nil
}

func (w *world) sources() (poller.Source, poller.Source, poller.Source, error) {
	hc := &http.Client{Timeout: clientTimeout}
	vc, err := vpp.New(vpp.Config{Name: vppSource, BaseURL: w.vppSrv.URL + "/mdm", SToken: vppToken, HTTPClient: hc,
		Backoff: fastBackoff, MaxAttempts: 4, InternalErrorPause: 50 * time.Millisecond, Logger: w.log})
	if err != nil {
		return nil, nil, nil, err
	}
	v2, err := vpp2.New(vpp2.Config{Name: vpp2Source, BaseURL: w.vppSrv.URL + "/mdm/v2", SToken: vppToken, HTTPClient: hc,
		Backoff: fastBackoff, MaxAttempts: 4, MaxRequestsPerSecond: 1000, Logger: w.log})
	if err != nil {
		return nil, nil, nil, err
	}
	vc2 := veeam.Config{Name: veeamSource, BaseURL: w.veeSrv.URL, PageSize: w.s.VeeamPage, HTTPClient: hc,
		Backoff: fastBackoff, MaxAttempts: 4, Logger: w.log}
	if w.s.VeeamLogin {
		vc2.Username, vc2.Password = veeamUser, veeamPassword
	} else {
		vc2.Token = veeamToken
	}
	wc, err := veeam.New(vc2)
	if err != nil {
		return nil, nil, nil, err
	}
	return vc, v2, wc, nil
}

func (w *world) startPollerHere(ctx context.Context) (*pollerProc, error) {
	nc, err := w.connect("sim-poller")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(2*time.Second))
	if err != nil {
		nc.Close()
		return nil, err
	}
	var h *bus.Handles
	for {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err = bus.Ensure(ectx, js, bus.Config{})
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		w.log.Warn("simulation: poller waits for NATS", "err", err)
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	vc, v2, wc, err := w.sources()
	if err != nil {
		nc.Close()
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	incarnation := strconv.FormatInt(time.Now().UnixNano(), 36)
	p := poller.New(js, h, poller.Config{
		Guard:         poller.Guard{MinRemovals: w.s.GuardMin, MaxRatio: w.s.GuardRatio, Hold: w.s.GuardHold},
		Lease:         poller.LeaseConfig{Owner: "sim-" + incarnation, TTL: time.Second},
		CommitTimeout: 3 * time.Second,
		ShutdownGrace: 500 * time.Millisecond,
		MaxPayload:    int(nc.MaxPayload()),
		Fault:         w.pollerFault,
		OnRun:         w.observeRun,
		Logger:        w.log.With("service", "poller"),
	},
		poller.SourceConfig{Source: vc, Interval: w.s.Interval, FullSyncInterval: w.s.FullSync},
		poller.SourceConfig{Source: v2, Interval: w.s.Interval, FullSyncInterval: w.s.FullSync},
		poller.SourceConfig{Source: wc, Interval: w.s.Interval})
	proc := &pollerProc{cancel: cancel, done: make(chan struct{}), nc: nc}
	go func() {
		defer close(proc.done)
		_ = p.Run(pctx)
	}()
	return proc, nil
}

// startPollerProcess runs the poller binary against the same APIs and NATS.
func (w *world) startPollerProcess() (*pollerProc, error) {
	cmd := exec.Command(w.opts.PollerBin)
	env := map[string]string{
		"NATS_URL": w.natsURL, "HTTP_ADDR": "127.0.0.1:0", "LEASE_TTL": "0", "LOG_LEVEL": "warn",
		"VPP_BASE_URL": w.vppSrv.URL + "/mdm", "VPP_STOKEN": vppToken,
		"VPP_INTERVAL": w.s.Interval.String(), "VPP_FULL_SYNC_INTERVAL": w.s.FullSync.String(),
		"VPP2_BASE_URL": w.vppSrv.URL + "/mdm/v2", "VPP2_STOKEN": vppToken,
		"VPP2_INTERVAL": w.s.Interval.String(), "VPP2_FULL_SYNC_INTERVAL": w.s.FullSync.String(),
		"VEEAM_BASE_URL": w.veeSrv.URL, "VEEAM_INTERVAL": w.s.Interval.String(), "VEEAM_PAGE_SIZE": strconv.Itoa(w.s.VeeamPage),
		"REMOVAL_GUARD_MIN": strconv.Itoa(w.s.GuardMin), "MAX_REMOVAL_RATIO": strconv.FormatFloat(w.s.GuardRatio, 'f', -1, 64),
		"REMOVAL_HOLD": w.s.GuardHold.String(), "ALLOW_INSECURE_HTTP": "true", // the fakes are httptest servers
	}
	if w.s.VeeamLogin {
		env["VEEAM_USERNAME"], env["VEEAM_PASSWORD"] = veeamUser, veeamPassword
	} else {
		env["VEEAM_TOKEN"] = veeamToken
	}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = w.logs, w.logs
	cmd.Dir = filepath.Dir(w.opts.PollerBin)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start poller process: %w", err)
	}
	p := &pollerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = cmd.Wait()
	}()
	return p, nil
}

// pollerFault is the poller's fault hook: an armed crash point stops the
// run there, and the whole incarnation is then stopped and replaced.
func (w *world) pollerFault(point string) error {
	w.mu.Lock()
	armed := w.crashAt == point && !w.settling
	gap := w.crashGap
	if armed {
		w.crashAt = ""
		// Under the lock: settle waits for the group once settling is set.
		w.wg.Add(1)
	}
	w.mu.Unlock()
	if !armed {
		return nil
	}
	w.log.Info("simulation: poller crashes", "at", point)
	go func() {
		defer w.wg.Done()
		w.restartPoller(context.Background(), gap)
	}()
	return errCrash
}

// restartPoller stops the poller incarnation and starts another after gap.
func (w *world) restartPoller(ctx context.Context, gap time.Duration) {
	w.mu.Lock()
	p := w.poller
	w.poller = nil
	w.mu.Unlock()
	if p == nil {
		return // already being replaced
	}
	if err := p.stop(); err != nil {
		w.fail(err.Error())
		return
	}
	time.Sleep(gap)
	if err := w.startPoller(ctx); err != nil {
		w.log.Error("simulation: restarting the poller", "err", err)
	}
}

// secondReplica runs another poller beside the current one for d, then
// stops the older of the two (the newer takes over) or the newer.
func (w *world) secondReplica(ctx context.Context, d time.Duration, stopOld bool) {
	second, err := w.startPollerHere(ctx)
	if err != nil {
		w.log.Error("simulation: starting a second poller replica", "err", err)
		return
	}
	time.Sleep(d)
	stop := second
	if stopOld {
		w.mu.Lock()
		if w.poller != nil {
			stop, w.poller = w.poller, second
		}
		w.mu.Unlock()
	}
	if err := stop.stop(); err != nil {
		w.fail(err.Error())
	}
}

// observeRun records every run that listed the directory, committed or
// not: the oracle needs both (a failed run may have published).
func (w *world) observeRun(source string, res poller.Result, err error) {
	if res.SnapshotStart.IsZero() {
		return
	}
	w.mu.Lock()
	w.runs = append(w.runs, runObs{source: source, start: res.SnapshotStart, end: res.SnapshotEnd, complete: res.Complete,
		committed: err == nil, seeded: res.Seeded && err == nil})
	w.mu.Unlock()
}

// notifierProc is one incarnation of the notifier.
type notifierProc struct {
	cancel context.CancelFunc
	done   chan struct{}
	nc     *nats.Conn
}

// stop ends it; crash closes its connection first, so that nothing in
// flight is acknowledged or released.
func (n *notifierProc) stop(crash bool) error {
	if crash {
		n.nc.Close()
	}
	n.cancel()
	defer n.nc.Close()
	return waitStop(n.done, "notifier")
}

func (w *world) startNotifier(ctx context.Context) error {
	nc, err := w.connect("sim-notifier")
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	sink, err := webhook.New(webhook.Config{Name: sinkName, URL: w.rcvSrv.URL, Timeout: time.Second})
	if err != nil {
		nc.Close()
		return err
	}
	nctx, cancel := context.WithCancel(ctx)
	n := notifier.New(js, notifier.Config{MaxAttempts: w.s.MaxAttempts, Backoff: httpx.Backoff{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		Schedule: []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}, ProbeEvery: 100 * time.Millisecond,
		SendTimeout: time.Second, Concurrency: 4, ShutdownGrace: 300 * time.Millisecond, Logger: w.log.With("service", "notifier")},
		notifier.Route{Sink: sink, Start: "all"})
	proc := &notifierProc{cancel: cancel, done: make(chan struct{}), nc: nc}
	go func() {
		defer close(proc.done)
		_ = n.Run(nctx)
	}()
	w.mu.Lock()
	w.notifier = proc
	w.mu.Unlock()
	return nil
}

func (w *world) crashNotifier(ctx context.Context, gap time.Duration) {
	w.mu.Lock()
	n := w.notifier
	w.notifier = nil
	w.mu.Unlock()
	if n == nil {
		return
	}
	if err := n.stop(true); err != nil {
		w.fail(err.Error())
		return
	}
	time.Sleep(gap)
	if err := w.startNotifier(ctx); err != nil {
		w.log.Error("simulation: restarting the notifier", "err", err)
	}
}

// ensureRunning starts whatever is not running.
func (w *world) ensureRunning(ctx context.Context) error {
	w.mu.Lock()
	p, n := w.poller, w.notifier
	w.mu.Unlock()
	if p == nil {
		if err := w.startPoller(ctx); err != nil {
			return err
		}
	}
	if n == nil {
		return w.startNotifier(ctx)
	}
	return nil
}

// poison publishes n kB of invalid UTF-8, not an event, on a Veeam user's
// subject of the event stream.
func (w *world) poison(ctx context.Context, kb int) {
	body := make([]byte, kb<<10)
	for i := range body {
		body[i] = byte(0x80 + i%64)
	}
	m := nats.NewMsg(events.SubjectPrefix + veeamSource + ".poisoned." + events.TypeUpdated)
	m.Data = body
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := w.obsJS.PublishMsg(pctx, m); err != nil {
		w.log.Warn("simulation: publishing a poison message", "err", err)
	}
}

// apiFault injects an API fault into a fake.
func (w *world) apiFault(st Step) {
	if st.API == "vpp" {
		w.dir.vpp.InjectFault(vppFault(st))
		return
	}
	if st.Kind == KindTokenExpiry {
		w.dir.veeam.ExpireTokens()
		return
	}
	w.dir.veeam.InjectFault(veeamFault(st))
}

func vppFault(st Step) vpptest.Fault {
	switch st.Kind {
	case KindAPIError:
		if st.N%2 == 0 {
			return vpptest.Fault{ErrorNumber: 9603, Times: st.N}
		}
		return vpptest.Fault{HTTPStatus: http.StatusInternalServerError, Times: st.N}
	case KindAPIThrottle:
		return vpptest.Fault{HTTPStatus: http.StatusServiceUnavailable, RetryAfter: "1"}
	case KindAPITimeout:
		return vpptest.Fault{Delay: slowAnswer}
	case KindAPITruncated:
		return vpptest.Fault{Batch: st.Page, Truncate: true}
	case KindAPIBatchExpired:
		return vpptest.Fault{Batch: 2, ErrorNumber: 9633}
	case KindLookupFailure:
		return vpptest.Fault{Lookup: true, HTTPStatus: http.StatusServiceUnavailable, Times: st.N}
	}
	return vpptest.Fault{ErrorNumber: 9646}
}

func veeamFault(st Step) veeamtest.Fault {
	switch st.Kind {
	case KindAPIError:
		return veeamtest.Fault{Status: 520, Times: st.N}
	case KindAPIThrottle:
		return veeamtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 1}
	case KindAPITimeout:
		return veeamtest.Fault{Delay: slowAnswer}
	case KindAPITruncated:
		return veeamtest.Fault{Page: st.Page, Truncate: true}
	case KindAPIDrift:
		return veeamtest.Fault{Page: st.Page, WrongOffset: true}
	case KindLookupFailure:
		return veeamtest.Fault{Lookup: true, Status: 520, Times: st.N}
	}
	return veeamtest.Fault{Status: 520}
}

var _ sync.Locker = (*sync.Mutex)(nil)
