package deployments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sethvargo/go-envconfig"
	"go.yaml.in/yaml/v3"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
)

// TestComposeStackRuns runs the services of compose/compose.yaml for real,
// without Docker: the three NATS nodes as embedded servers started from the
// configuration file and environment their compose command gives them, the
// simulator, both pollers and the notifier in this process with exactly
// the environment compose gives each, and, when the prometheus binary is
// installed, Prometheus with a copy of prometheus.yaml. Only what a
// container runtime would provide is rewritten: host names (nats-1,
// simulator, …) become the loopback addresses the servers got, listen
// addresses become free loopback ports, /run/secrets/<name> becomes the
// repository file the compose secret <name> mounts, and /data becomes a
// temporary directory. No interval of the rollcall services is shortened:
// the test waits for the real VPP_INTERVAL, VEEAM_INTERVAL and LEASE_TTL of
// compose.yaml (only Prometheus scrapes and evaluates every 1s, not 15s).
// One deviation from compose's start order is explained below: the second
// poller starts once the first is ready.
//
// It proves what a newcomer running `docker compose up` relies on: the
// NATS cluster forms and elects a JetStream meta leader; every service
// becomes healthy and ready; a user added in the simulator reaches the
// notifier's console; exactly one poller polls each source, and when that
// replica stops the other takes over and events keep flowing; no NATS
// permission is violated and no secret appears in any log; Prometheus
// scrapes every target, sees rollcall's metrics and loads the alerting
// rules.
func TestComposeStackRuns(t *testing.T) {
	started := time.Now()
	doc, services := loadCompose(t)
	secretFiles, secretValues := composeSecretFiles(t, doc)
	// hosts maps a service's address inside compose (service:port) to the
	// loopback address it really listens on here.
	hosts := map[string]string{}

	// 1. The NATS cluster.
	cluster := startComposeNATS(t, doc, services, secretFiles, hosts)
	t.Logf("NATS cluster %v up with a meta leader after %s", cluster.names, time.Since(started).Round(time.Millisecond))

	// 2. The simulator, then the notifier and the pollers.
	sim := startComposeSimulator(t, services, hosts)
	tl := &timeline{}
	var pollerSvcs, notifierSvcs []composeService
	for _, name := range sortedKeys(services) {
		s := services[name]
		if slices.Contains(stringList(s.raw["profiles"]), "tools") {
			continue // on demand only (replay)
		}
		switch s.rollcallCommand() {
		case "poller":
			pollerSvcs = append(pollerSvcs, s)
		case "notifier":
			notifierSvcs = append(notifierSvcs, s)
		}
	}
	if len(pollerSvcs) != 2 || len(notifierSvcs) != 1 {
		t.Fatalf("compose.yaml runs %d pollers and %d notifiers; want 2 and 1", len(pollerSvcs), len(notifierSvcs))
	}
	// Everything starts at once, as compose starts it: the two pollers race
	// to create the stream, buckets and object store on a fresh cluster
	// (bus.Ensure retries the requests such a race leaves unanswered).
	notifier := startComposeService(t, notifierSvcs[0], services, hosts, secretFiles, tl)
	pollers := []*composeProc{
		startComposeService(t, pollerSvcs[0], services, hosts, secretFiles, tl),
		startComposeService(t, pollerSvcs[1], services, hosts, secretFiles, tl),
	}
	all := append(slices.Clone(pollers), notifier)
	sources := pollerSources(t, pollers[0].env)
	for _, p := range pollers[1:] {
		if got := pollerSources(t, p.env); !slices.Equal(got, sources) {
			t.Fatalf("%s polls %v, %s polls %v: the replicas must share the same sources", pollers[0].name, sources, p.name, got)
		}
	}

	// Prometheus, started now so that it scrapes while the rest is checked.
	prom := startComposePrometheus(t, services, hosts)

	// 3. Every service healthy and ready (what a probe would ask).
	for _, p := range all {
		p.waitReady(t, 45*time.Second)
	}
	t.Logf("all services ready after %s", time.Since(started).Round(time.Millisecond))

	// 4. Exactly one poller holds each source's lease and polls it; the
	// other is standby and has never run it.
	holders := waitLeases(t, tl, pollers, sources, 45*time.Second)
	t.Logf("lease holders %v after %s", holders, time.Since(started).Round(time.Millisecond))

	// 5. A user added through the simulator's admin API reaches the
	// notifier's console (the poller seeded the source silently first:
	// waitLeases waited for a successful run of every source).
	sim.addVPPUser(t, 990001)
	waitEvent(t, notifier, "vpp", "990001", 45*time.Second)
	t.Logf("event for the new user at the notifier after %s", time.Since(started).Round(time.Millisecond))

	// 6. Prometheus: every target up, rollcall's metrics scraped, the
	// alerting rules loaded and evaluated.
	t.Run("prometheus", func(t *testing.T) {
		if prom == nil {
			t.Skip("SKIPPED: no prometheus binary on PATH (Debian: apt-get install prometheus); the scrape of the compose targets is not checked")
		}
		prom.check(t, all, 45*time.Second)
		t.Logf("Prometheus scraped every target after %s", time.Since(started).Round(time.Millisecond))
	})

	// 7. Stop the replica holding the VPP lease: the other takes over its
	// sources (it released the lease, so within LEASE_TTL/3 plus a run)
	// and a user added afterwards still reaches the notifier.
	var stopped, survivor *composeProc
	for _, p := range pollers {
		if p.name == holders["vpp"] {
			stopped = p
		} else {
			survivor = p
		}
	}
	if stopped == nil || survivor == nil {
		t.Fatalf("cannot tell the VPP lease holder %q among the pollers", holders["vpp"])
	}
	stopAt := time.Now()
	if err := stopped.stop(20 * time.Second); err != nil {
		t.Fatalf("%s stopped with %v\n%s", stopped.name, err, stopped.log.String())
	}
	sim.addVPPUser(t, 990002)
	testutil.CheckFor(t, 40*time.Second, survivor.name+" taking over every source", func() error {
		cur, _ := tl.leases()
		for _, src := range sources {
			if cur[src] != survivor.name {
				return fmt.Errorf("lease of %s held by %q", src, cur[src])
			}
			m, err := testutil.Metrics(survivor.httpAddr)
			if err != nil {
				return err
			}
			if m[runsSeries(src, "success")] < 1 {
				return fmt.Errorf("%s has not run %s yet", survivor.name, src)
			}
		}
		return nil
	})
	t.Logf("%s took over %v %s after %s was stopped", survivor.name, sources, time.Since(stopAt).Round(time.Millisecond), stopped.name)
	waitEvent(t, notifier, "vpp", "990002", 40*time.Second)
	survivor.waitReady(t, 10*time.Second)
	notifier.waitReady(t, 10*time.Second)
	if prom != nil {
		prom.waitUp(t, stopped.httpAddr, "0", 20*time.Second)
	}

	// 8. Stop everything (services before NATS) so that the logs are
	// complete, then check them.
	for _, p := range []*composeProc{survivor, notifier} {
		if err := p.stop(20 * time.Second); err != nil {
			t.Errorf("%s stopped with %v", p.name, err)
		}
	}
	sim.stop()

	// Never two holders of one lease at once, over the whole run.
	if _, overlaps := tl.leases(); len(overlaps) > 0 {
		t.Errorf("two pollers held one lease at once:\n%s", strings.Join(overlaps, "\n"))
	}
	// No permission violation on any NATS node.
	for i, l := range cluster.violations {
		l.none(t, cluster.names[i])
	}
	// No secret in any log or output.
	logs := map[string]string{"simulator log": sim.log.String(), "notifier console": notifier.out.String()}
	for _, p := range all {
		logs[p.name+" log"] = p.log.String()
	}
	for i, b := range cluster.logs {
		logs[cluster.names[i]+" log"] = b.String()
	}
	if prom != nil {
		logs["prometheus log"] = prom.log.String()
	}
	for name, text := range logs {
		for secret, value := range secretValues {
			if strings.Contains(text, value) {
				t.Errorf("%s contains the secret %s", name, secret)
			}
		}
	}
	if t.Failed() {
		for _, p := range all {
			t.Logf("%s log:\n%s", p.name, p.log.String())
		}
	}
	t.Logf("compose stack ran for %s", time.Since(started).Round(time.Millisecond))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}

// composeCertsDir is the directory, relative to deployments/compose, that
// compose.yaml takes the NATS cluster's TLS files from: what
// deployments/nats/gen-certs.sh writes by default, not in git.
const composeCertsDir = "certs"

// composeSecretFiles returns, by compose secret name, the absolute path of
// the file the top-level secrets: mapping mounts, and each file's value.
// The TLS files compose takes from ./certs are made as README "Compose"
// says, by gen-certs.sh for compose's NATS nodes, here into a temporary
// directory.
func composeSecretFiles(t *testing.T, doc map[string]any) (files, values map[string]string) {
	t.Helper()
	return composeSecrets(t, doc, "", "")
}

// composeSecrets is composeSecretFiles with the ./certs files taken from
// the directory certs, or, when certs is "", made by gen-certs.sh into a
// temporary directory with extraSANs (NATS_CERT_EXTRA_SANS) on every node
// certificate.
func composeSecrets(t *testing.T, doc map[string]any, certs, extraSANs string) (files, values map[string]string) {
	t.Helper()
	files, values = map[string]string{}, map[string]string{}
	for name, v := range ymap(doc["secrets"]) {
		f := ystr(ydig(v, "file"))
		if f == "" {
			t.Fatalf("secret %s is not a file", name)
		}
		var abs string
		if rel, ok := strings.CutPrefix(filepath.ToSlash(filepath.Clean(f)), composeCertsDir+"/"); ok {
			if certs == "" {
				certs = genCerts(t, "nats/gen-certs.sh", t.TempDir(), composeNATSNames(doc), extraSANs)
			}
			abs = filepath.Join(certs, filepath.FromSlash(rel))
		} else {
			abs = filepath.Join("compose", f)
		}
		abs, err := filepath.Abs(abs)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			t.Fatalf("secret %s: %v (./%s/ is what deployments/nats/gen-certs.sh makes)", name, err, composeCertsDir)
		}
		files[name] = abs
		if v := strings.TrimSpace(string(b)); v != "" {
			values[name] = v
		}
	}
	return files, values
}

// composeNATSNames are the names of compose's NATS services, sorted.
func composeNATSNames(doc map[string]any) []string {
	var names []string
	for name, v := range ymap(doc["services"]) {
		if strings.HasPrefix(ystr(ydig(v, "image")), "nats:") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// serviceSecrets lists the secrets a service mounts at /run/secrets.
func serviceSecrets(s composeService) []string {
	var out []string
	for _, sec := range ylist(s.raw["secrets"]) {
		name := ystr(sec)
		if m := ymap(sec); m != nil {
			name = ystr(m["source"])
		}
		out = append(out, name)
	}
	return out
}

// hostRE matches the host:port of a URL (nats://nats-1:4222,
// http://simulator:8080/mdm).
var hostRE = regexp.MustCompile(`//([A-Za-z0-9._-]+):([0-9]+)`)

// rewriteHosts replaces every service:port in the URLs of v with the
// loopback address that service listens on here; a compose service it
// cannot map is a test failure, so nothing silently points elsewhere.
func rewriteHosts(t *testing.T, what, v string, hosts map[string]string, services map[string]composeService) string {
	t.Helper()
	return hostRE.ReplaceAllStringFunc(v, func(m string) string {
		sub := hostRE.FindStringSubmatch(m)
		if addr, ok := hosts[sub[1]+":"+sub[2]]; ok {
			return "//" + addr
		}
		if _, ok := services[sub[1]]; ok {
			t.Fatalf("%s=%q: nothing listens for the service %s on port %s", what, v, sub[1], sub[2])
		}
		return m
	})
}

// composeCluster is the running NATS cluster.
type composeCluster struct {
	names      []string
	clients    map[string]string // service:port → client address
	servers    []*server.Server
	violations []*serverLog
	logs       []*syncbuf.Buffer
}

// natsLogger keeps everything a NATS server logs (to look for secrets) and
// hands warnings and errors to a serverLog (permission violations).
type natsLogger struct {
	all *syncbuf.Buffer
	v   *serverLog
}

func (l natsLogger) line(level, format string, v ...any) {
	fmt.Fprintf(l.all, "[%s] %s\n", level, fmt.Sprintf(format, v...))
}
func (l natsLogger) Noticef(format string, v ...any) { l.line("INF", format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.line("DBG", format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.line("TRC", format, v...) }
func (l natsLogger) Warnf(format string, v ...any) {
	l.line("WRN", format, v...)
	l.v.Warnf(format, v...)
}
func (l natsLogger) Errorf(format string, v ...any) {
	l.line("ERR", format, v...)
	l.v.Errorf(format, v...)
}
func (l natsLogger) Fatalf(format string, v ...any) {
	l.line("FTL", format, v...)
	l.v.Fatalf(format, v...)
}

// startComposeNATS starts every NATS service of compose as nats-server
// --config would in its container: the configuration file its command
// names (through its bind mount), in the environment its command exports
// from the secret files, with /run/secrets/<name> paths (its TLS files)
// pointing at files[name]. Listen ports, route addresses and the /data
// volume are moved to loopback ports and temporary directories on the
// parsed options. It waits for each node's compose healthcheck and for a
// JetStream meta leader, and records each node's client address in hosts.
func startComposeNATS(t *testing.T, doc map[string]any, services map[string]composeService, files, hosts map[string]string) *composeCluster {
	t.Helper()
	return startComposeNATSOn(t, doc, services, files, hosts, "127.0.0.1")
}

// startComposeNATSOn is startComposeNATS with every listener on the
// address ip (one that pods of a local Kubernetes node can reach; the node
// certificates in files must name it).
func startComposeNATSOn(t *testing.T, doc map[string]any, services map[string]composeService, files, hosts map[string]string, ip string) *composeCluster {
	t.Helper()
	var names []string
	for _, name := range sortedKeys(services) {
		if strings.HasPrefix(ystr(services[name].raw["image"]), "nats:") {
			names = append(names, name)
		}
	}
	if len(names) != 3 {
		t.Fatalf("NATS services %v, want 3", names)
	}
	// The route ports must be known before any node starts (each node's
	// routes name all three), so they are picked free and then bound by
	// the servers. A port taken in between (say, as the local end of one
	// of the routes the first nodes dial) fails that node's route
	// listener: the cluster is then started again on other ports.
	for attempt := 1; ; attempt++ {
		c, err := tryComposeNATS(t, doc, services, files, names, natstest.FreePorts(t, len(names)), ip)
		if err == nil {
			for k, v := range c.clients {
				hosts[k] = v
			}
			return c
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting the NATS cluster (attempt %d): %v; again on other ports", attempt, err)
	}
}

func tryComposeNATS(t *testing.T, doc map[string]any, services map[string]composeService, files map[string]string, names []string, ports []int, ip string) (*composeCluster, error) {
	t.Helper()
	c := &composeCluster{names: names, clients: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range c.logs {
				t.Logf("%s log:\n%s", names[i], l.String())
			}
		}
	})
	fail := func(format string, args ...any) (*composeCluster, error) {
		err := fmt.Errorf(format, args...)
		for i, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
			if i == len(c.servers)-1 {
				err = fmt.Errorf("%w; its log:\n%s", err, c.logs[i].String())
			}
		}
		return nil, err
	}
	var healthURLs []string
	for i, name := range names {
		svc := services[name]
		env := natsComposeEnv(t, doc, svc, files)
		for k, v := range env {
			t.Setenv(k, v)
		}
		opts, err := server.ProcessConfigFile(natsServiceConfig(t, svc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if opts.ServerName != svc.env["NATS_SERVER_NAME"] || !opts.JetStream {
			t.Fatalf("%s: server name %q (NATS_SERVER_NAME %q), JetStream %v", name, opts.ServerName, svc.env["NATS_SERVER_NAME"], opts.JetStream)
		}
		// Route addresses: service:6222 → that node's loopback cluster port.
		routeHosts := map[string]string{}
		for j, n := range names {
			routeHosts[fmt.Sprintf("%s:%d", n, opts.Cluster.Port)] = net.JoinHostPort(ip, strconv.Itoa(ports[j]))
		}
		for j, u := range opts.Routes {
			addr, ok := routeHosts[u.Host]
			if !ok {
				t.Fatalf("%s: route %s is not a NATS service's cluster port", name, u.Redacted())
			}
			r := *u
			r.Host = addr
			opts.Routes[j] = &r
		}
		// The store: the named volume mounted at /data.
		var dataTarget string
		for _, v := range ylist(svc.raw["volumes"]) {
			if src, dst, ok := strings.Cut(ystr(v), ":"); ok && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				dst, _, _ = strings.Cut(dst, ":")
				if opts.StoreDir == dst || strings.HasPrefix(opts.StoreDir, dst+"/") {
					dataTarget = dst
				}
			}
		}
		if dataTarget == "" {
			t.Fatalf("%s: the JetStream store %s is on no volume: it would be lost with the container", name, opts.StoreDir)
		}
		opts.StoreDir = filepath.Join(t.TempDir(), strings.TrimPrefix(opts.StoreDir, dataTarget))
		clientPort, httpPort, httpHost := opts.Port, opts.HTTPPort, opts.HTTPHost
		opts.Host, opts.Port = ip, -1
		opts.HTTPHost, opts.HTTPPort = ip, -1
		opts.Cluster.Host, opts.Cluster.Port = ip, ports[i]
		opts.NoSigs = true

		// The compose healthcheck asks the monitoring port of the file.
		var check string
		for _, a := range stringList(ydig(svc.raw, "healthcheck", "test")) {
			if strings.HasPrefix(a, "http://") {
				check = a
			}
		}
		if _, p := hostPort(check); check == "" || p != strconv.Itoa(httpPort) {
			t.Fatalf("%s: healthcheck %q does not ask the monitoring port %d", name, check, httpPort)
		}
		// Monitoring is on the container's loopback only (cluster.conf):
		// the healthcheck asks it there, and publishing it would reach
		// nothing.
		// (Checked on the file's address, before the test moves it to ip.)
		if h, _ := hostPort(check); net.ParseIP(httpHost) == nil || !net.ParseIP(httpHost).IsLoopback() || h != httpHost {
			t.Fatalf("%s: monitoring on %q, healthcheck %q: want both on loopback", name, httpHost, check)
		}
		for _, p := range stringList(svc.raw["ports"]) {
			if strings.HasSuffix(p, ":"+strconv.Itoa(httpPort)) {
				t.Fatalf("%s publishes the monitoring port (%s), which listens on the container's loopback only", name, p)
			}
		}

		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, all := &serverLog{}, &syncbuf.Buffer{}
		s.SetLogger(natsLogger{all: all, v: v}, false, false)
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		c.servers, c.violations, c.logs = append(c.servers, s), append(c.violations, v), append(c.logs, all)
		// A listener that failed is logged as fatal; the server then never
		// becomes ready.
		ready := false
		for deadline := time.Now().Add(20 * time.Second); !ready && time.Now().Before(deadline); {
			if strings.Contains(all.String(), "[FTL]") {
				return fail("%s could not start", name)
			}
			ready = s.ReadyForConnections(100 * time.Millisecond)
		}
		if !ready {
			return fail("%s: not ready for connections", name)
		}
		cu, err := url.Parse(s.ClientURL()) // tls://…: the clients must speak TLS
		if err != nil {
			t.Fatal(err)
		}
		cp := cu.Port()
		c.clients[fmt.Sprintf("%s:%d", name, clientPort)] = net.JoinHostPort(ip, cp)
		h, p := hostPort(check)
		healthURLs = append(healthURLs, strings.Replace(check, "//"+h+":"+p, "//"+s.MonitorAddr().String(), 1))
	}
	// depends_on: condition: service_healthy.
	for i, u := range healthURLs {
		testutil.CheckFor(t, 30*time.Second, names[i]+" healthcheck "+u, func() error {
			_, err := httpGet(u, http.StatusOK)
			return err
		})
	}
	testutil.CheckFor(t, 30*time.Second, "a JetStream meta leader", func() error {
		leaders := 0
		for i, s := range c.servers {
			if s.JetStreamIsLeader() {
				leaders++
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s is not current with the meta leader", names[i])
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
	return c, nil
}

// composeSim is the simulator service.
type composeSim struct {
	base string
	log  *syncbuf.Buffer
	once sync.Once
	halt func()
}

// startComposeSimulator runs the simulator service as `simulator serve`
// does (cmd/simulator, a main package this test cannot import): the SIM_*
// environment of compose with the same defaults, the directory APIs and
// the admin API on SIM_ADDR (here a free loopback port), changing every
// SIM_CHURN.
func startComposeSimulator(t *testing.T, services map[string]composeService, hosts map[string]string) *composeSim {
	t.Helper()
	var svc composeService
	for _, name := range sortedKeys(services) {
		if services[name].rollcallCommand() == "simulator" {
			svc = services[name]
		}
	}
	if svc.name == "" {
		t.Fatal("no simulator service")
	}
	if !slices.Equal(svc.command, []string{"simulator", "serve"}) && !slices.Equal(svc.command, []string{"simulator"}) {
		t.Fatalf("simulator runs %q; this test runs `simulator serve`", svc.command)
	}
	env := map[string]string{"SIM_ADDR": "127.0.0.1:8080", "SIM_USERS": "20", "SIM_CHURN": "3s", "SIM_SEED": "1",
		"SIM_VPP_STOKEN": simulator.DefaultVPPToken, "SIM_VEEAM_TOKEN": simulator.DefaultVeeamToken}
	for k, v := range svc.env {
		if _, ok := env[k]; !ok {
			t.Fatalf("simulator: compose sets %s, which this test does not pass on (cmd/simulator's parse)", k)
		}
		env[k] = v
	}
	users, err := strconv.Atoi(env["SIM_USERS"])
	if err != nil {
		t.Fatalf("SIM_USERS: %v", err)
	}
	churn, err := time.ParseDuration(env["SIM_CHURN"])
	if err != nil {
		t.Fatalf("SIM_CHURN: %v", err)
	}
	seed, err := strconv.ParseInt(env["SIM_SEED"], 10, 64)
	if err != nil {
		t.Fatalf("SIM_SEED: %v", err)
	}
	_, port := hostPort(env["SIM_ADDR"])
	sim := simulator.New(simulator.Config{Users: users, Seed: seed, VPPToken: env["SIM_VPP_STOKEN"], VeeamToken: env["SIM_VEEAM_TOKEN"]})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hosts[svc.name+":"+port] = ln.Addr().String()
	cs := &composeSim{base: "http://" + ln.Addr().String(), log: &syncbuf.Buffer{}}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sim.Run(ctx, churn, func(c string) { fmt.Fprintln(cs.log, "change:", c) })
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(cs.log, "serve:", err)
		}
	}()
	cs.halt = func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		wg.Wait()
	}
	t.Cleanup(cs.stop)
	return cs
}

func (s *composeSim) stop() { s.once.Do(s.halt) }

// addVPPUser adds a registered VPP user through the admin API, as README
// "Simulator faults" shows.
func (s *composeSim) addVPPUser(t *testing.T, id int64) {
	t.Helper()
	body := fmt.Sprintf(`{"userId": %d, "email": "compose-%d@school.example", "clientUserIdStr": "compose-%d"}`, id, id, id)
	res, err := http.Post(s.base+"/admin/users/vpp", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("adding VPP user %d: %s %s", id, res.Status, b)
	}
}

// timeline interleaves the log lines of every service in the order they
// were written, so that lease hand-overs between replicas can be ordered.
type timeline struct {
	mu    sync.Mutex
	lines []timelineLine
}

type timelineLine struct{ service, text string }

// logWriter is a service's stderr: its own buffer and the timeline.
type logWriter struct {
	service string
	own     *syncbuf.Buffer
	tl      *timeline
}

func (w logWriter) Write(p []byte) (int, error) {
	w.tl.mu.Lock()
	defer w.tl.mu.Unlock()
	_, _ = w.own.Write(p)
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		w.tl.lines = append(w.tl.lines, timelineLine{w.service, line})
	}
	return len(p), nil
}

var (
	leaseTakenRE   = regexp.MustCompile(`msg="lease taken: `)
	leaseLostRE    = regexp.MustCompile(`msg="lease (?:not held|given up): `)
	leaseSourceRE  = regexp.MustCompile(`(?:^| )source=(\S+)`)
	runsSeriesTmpl = `rollcall_source_runs_total{outcome=%q,source=%q}`
)

func runsSeries(source, outcome string) string { return fmt.Sprintf(runsSeriesTmpl, outcome, source) }

// leases replays the pollers' lease log lines ("lease taken", logged after
// the lease was won; "lease not held", logged before it is released): the
// holder of each source now, and every moment a replica took a lease that
// another had not given up.
func (tl *timeline) leases() (holders map[string]string, overlaps []string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	holders = map[string]string{}
	for _, l := range tl.lines {
		taken, lost := leaseTakenRE.MatchString(l.text), leaseLostRE.MatchString(l.text)
		if !taken && !lost {
			continue
		}
		m := leaseSourceRE.FindStringSubmatch(l.text)
		if m == nil {
			overlaps = append(overlaps, "lease line without a source: "+l.text)
			continue
		}
		src := m[1]
		switch {
		case taken && holders[src] != "" && holders[src] != l.service:
			overlaps = append(overlaps, fmt.Sprintf("%s took %s while %s held it: %s", l.service, src, holders[src], l.text))
			holders[src] = l.service
		case taken:
			holders[src] = l.service
		case lost && holders[src] == l.service:
			holders[src] = ""
		}
	}
	return holders, overlaps
}

// composeProc is a poller or the notifier running in this process.
type composeProc struct {
	name     string
	env      map[string]string
	httpAddr string
	log      *syncbuf.Buffer
	out      *syncbuf.Buffer // the notifier's stdout (console sink)
	cancel   context.CancelFunc
	exited   chan struct{}
	err      error
	stopped  bool // stop was called
}

// startComposeService runs a poller or notifier service with the
// environment compose gives it, rewritten only where a container runtime
// would differ: service host names, HTTP_ADDR and /run/secrets paths.
func startComposeService(t *testing.T, s composeService, services map[string]composeService, hosts, secretFiles map[string]string, tl *timeline) *composeProc {
	t.Helper()
	p := &composeProc{name: s.name, env: map[string]string{}, log: &syncbuf.Buffer{}, out: &syncbuf.Buffer{}, exited: make(chan struct{})}
	mounted := serviceSecrets(s)
	for k, v := range s.env {
		switch {
		case k == "HTTP_ADDR":
			if v == "" {
				t.Fatalf("%s: HTTP_ADDR is empty: no /metrics, /healthz or /readyz to scrape or probe", s.name)
			}
			p.httpAddr = testutil.FreeAddr(t)
			_, port := hostPort(v)
			hosts[s.name+":"+port] = p.httpAddr
			p.env[k] = p.httpAddr
		case strings.HasPrefix(v, "/run/secrets/"):
			name := strings.TrimPrefix(v, "/run/secrets/")
			if !slices.Contains(mounted, name) || secretFiles[name] == "" {
				t.Fatalf("%s: %s=%s is not a secret it mounts (%v)", s.name, k, v, mounted)
			}
			p.env[k] = secretFiles[name]
		default:
			p.env[k] = rewriteHosts(t, s.name+": "+k, v, hosts, services)
		}
	}
	if p.httpAddr == "" {
		t.Fatalf("%s sets no HTTP_ADDR: compose would serve its image default, which this test does not guess", s.name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	stderr := logWriter{service: s.name, own: p.log, tl: tl}
	env := envconfig.MapLookuper(maps.Clone(p.env))
	switch cmd := s.command; {
	case slices.Equal(cmd, []string{"poller"}):
		go func() {
			defer close(p.exited)
			p.err = pollerapp.Run(ctx, env, stderr)
		}()
	case slices.Equal(cmd, []string{"notifier", "run"}), slices.Equal(cmd, []string{"notifier"}):
		go func() {
			defer close(p.exited)
			p.err = notifierapp.Run(ctx, env, p.out, stderr)
		}()
	default:
		cancel()
		t.Fatalf("%s runs %q, which this test does not know", s.name, cmd)
	}
	t.Cleanup(func() {
		if p.stopped {
			return // the test stopped it and checked how
		}
		if err := p.stop(30 * time.Second); err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
	})
	return p
}

// stop cancels the service and waits for it to return; a requested stop
// must end without error.
func (p *composeProc) stop(timeout time.Duration) error {
	p.stopped = true
	p.cancel()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("did not stop within %s", timeout)
	}
}

// alive fails when the service has exited on its own.
func (p *composeProc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.log.String())
	default:
		return nil
	}
}

// waitReady waits for /healthz {"status":"ok"} and /readyz
// {"status":"ready"}, both 200.
func (p *composeProc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	testutil.CheckFor(t, timeout, p.name+" healthy and ready", func() error {
		if err := p.alive(); err != nil {
			return err
		}
		if err := healthyAndReady(p.httpAddr); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		return nil
	})
}

// healthyAndReady asks a service's /healthz and /readyz, as its probes do:
// both 200, with {"status":"ok"} and {"status":"ready"}.
func healthyAndReady(addr string) error {
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		b, err := httpGet("http://"+addr+path, http.StatusOK)
		if err != nil {
			return err
		}
		var body struct{ Status string }
		if err := json.Unmarshal(b, &body); err != nil || body.Status != want {
			return fmt.Errorf("%s: %s", path, b)
		}
	}
	return nil
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// httpGet fetches u and requires the status code.
func httpGet(u string, code int) ([]byte, error) {
	res, err := httpClient.Get(u)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != code {
		return b, fmt.Errorf("GET %s: %s: %s", u, res.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// pollerSources are the sources a poller's environment configures (the
// single-source form compose uses).
func pollerSources(t *testing.T, env map[string]string) []string {
	t.Helper()
	if env["SOURCES"] != "" {
		t.Fatal("compose uses SOURCES; teach this test the named sources")
	}
	var out []string
	if env["VPP_STOKEN"] != "" || env["VPP_STOKEN_FILE"] != "" {
		out = append(out, "vpp")
	}
	if env["VEEAM_BASE_URL"] != "" {
		out = append(out, "veeam")
	}
	if !slices.Contains(out, "vpp") {
		t.Fatal("the compose pollers do not poll VPP, which this test adds users to")
	}
	return out
}

// waitLeases waits until each source's lease is held by one poller that
// has run it successfully, while the other reports it standby and has
// never run it, and returns the holder of each source.
func waitLeases(t *testing.T, tl *timeline, pollers []*composeProc, sources []string, timeout time.Duration) map[string]string {
	t.Helper()
	var holders map[string]string
	testutil.CheckFor(t, timeout, "one lease holder per source that has polled it", func() error {
		cur, overlaps := tl.leases()
		if len(overlaps) > 0 {
			return fmt.Errorf("%s", strings.Join(overlaps, "\n"))
		}
		for _, src := range sources {
			if cur[src] == "" {
				return fmt.Errorf("no poller holds the lease of %s yet", src)
			}
			for _, p := range pollers {
				if err := p.alive(); err != nil {
					return err
				}
				m, err := testutil.Metrics(p.httpAddr)
				if err != nil {
					return err
				}
				ran, succeeded, healthy := sourceState(m, src)
				if p.name == cur[src] {
					if succeeded < 1 || healthy != 1 {
						return fmt.Errorf("%s holds %s but has %v successful runs, healthy %v", p.name, src, succeeded, healthy)
					}
				} else if ran != 0 || healthy != 0 {
					return fmt.Errorf("%s does not hold %s but ran it %v times, healthy %v", p.name, src, ran, healthy)
				}
			}
		}
		holders = cur
		return nil
	})
	return holders
}

// sourceState reads a poller's metrics for one source: its runs of every
// outcome, its successful runs, and whether it reports the source healthy
// (only the replica holding the lease does).
func sourceState(m map[string]float64, src string) (ran, succeeded, healthy float64) {
	for series, v := range m {
		if strings.HasPrefix(series, "rollcall_source_runs_total{") && strings.Contains(series, fmt.Sprintf("source=%q", src)) {
			ran += v
		}
	}
	return ran, m[runsSeries(src, "success")], m[fmt.Sprintf(`rollcall_source_healthy{kind=%q,source=%q}`, src, src)]
}

// waitEvent waits for an event about the user at the notifier's console
// (one CloudEvent JSON per line).
func waitEvent(t *testing.T, n *composeProc, source, id string, timeout time.Duration) {
	t.Helper()
	testutil.CheckFor(t, timeout, "the notifier printing an event for "+source+" user "+id, func() error {
		if err := n.alive(); err != nil {
			return err
		}
		return consoleHasEvent(n.out.String(), source, id)
	})
}

// consoleHasEvent looks for an event about the user among console lines
// (one CloudEvent JSON per line; other lines are skipped).
func consoleHasEvent(out, source, id string) error {
	for line := range strings.SplitSeq(out, "\n") {
		var e struct {
			Type string
			Data struct{ User struct{ Source, ID string } }
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Type != "" && e.Data.User.Source == source && e.Data.User.ID == id {
			return nil
		}
	}
	return fmt.Errorf("not among %d lines", strings.Count(out, "\n"))
}

// composePrometheus is the prometheus binary running with the compose
// configuration.
type composePrometheus struct {
	addr    string
	log     *syncbuf.Buffer
	exited  chan struct{}
	targets map[string]string // target address → job
	rules   []string          // the alert names of the rule files
}

// startComposePrometheus starts Prometheus as the compose service does:
// its command's flags, with a copy of the mounted prometheus.yaml whose
// targets are the services' real addresses, its rule files the repository
// files compose mounts, and scrape and evaluation intervals of 1s (15s in
// the file) so that the test need not wait. It returns nil, and logs why,
// when no prometheus binary is installed.
func startComposePrometheus(t *testing.T, services map[string]composeService, hosts map[string]string) *composePrometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Logf("NOTE: no prometheus binary on PATH (%v): the scrape of the compose targets is skipped; install it with apt-get install prometheus", err)
		return nil
	}
	svc, ok := services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	cfgPath, tsdbPath := "/etc/prometheus/prometheus.yml", "/prometheus"
	var args []string
	for _, a := range svc.command {
		switch {
		case strings.HasPrefix(a, "--config.file="):
			cfgPath = strings.TrimPrefix(a, "--config.file=")
		case strings.HasPrefix(a, "--storage.tsdb.path="):
			tsdbPath = strings.TrimPrefix(a, "--storage.tsdb.path=")
		case strings.HasPrefix(a, "--web.listen-address="):
			t.Fatalf("prometheus: %s; this test expects the image's default :9090", a)
		default:
			args = append(args, a)
		}
	}
	host := svc.hostFile(cfgPath)
	if host == "" {
		t.Fatalf("prometheus reads %s, which compose does not mount", cfgPath)
	}
	docs, err := readYAMLDocs(host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := docs[0]
	p := &composePrometheus{addr: testutil.FreeAddr(t), log: &syncbuf.Buffer{}, exited: make(chan struct{}), targets: map[string]string{}}
	hosts["localhost:9090"] = p.addr // Prometheus scraping itself
	global := ymap(cfg["global"])
	if global == nil {
		global = map[string]any{}
		cfg["global"] = global
	}
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	delete(cfg, "alerting")
	var rules []any
	for _, rf := range ylist(cfg["rule_files"]) {
		h := svc.hostFile(ystr(rf))
		if h == "" {
			t.Fatalf("prometheus: rule file %s is not mounted", ystr(rf))
		}
		abs, err := filepath.Abs(h)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, abs)
		p.rules = append(p.rules, alertNames(t, abs)...)
	}
	cfg["rule_files"] = rules
	for _, sc := range ylist(cfg["scrape_configs"]) {
		job := ystr(ydig(sc, "job_name"))
		for _, st := range ylist(ydig(sc, "static_configs")) {
			var targets []any
			for _, tg := range ylist(ydig(st, "targets")) {
				addr, ok := hosts[ystr(tg)]
				if !ok {
					t.Fatalf("prometheus: job %s scrapes %s, where nothing listens", job, ystr(tg))
				}
				targets = append(targets, addr)
				p.targets[addr] = job
			}
			ymap(st)["targets"] = targets
		}
	}
	dir := t.TempDir()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, filepath.Base(cfgPath))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--config.file="+file, "--storage.tsdb.path="+filepath.Join(dir, strings.TrimPrefix(tsdbPath, "/")),
		"--web.listen-address="+p.addr)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	t.Logf("prometheus %v on %s", args, p.addr)
	return p
}

// query runs an instant PromQL query.
func (p *composePrometheus) query(q string) ([]promSample, error) {
	select {
	case <-p.exited:
		return nil, fmt.Errorf("prometheus exited:\n%s", p.log.String())
	default:
	}
	return promQuery("http://"+p.addr, q)
}

// promSample is one series of an instant query's result.
type promSample struct {
	Metric map[string]string
	Value  []any
}

// promQuery runs an instant PromQL query on the Prometheus at base.
func promQuery(base, q string) ([]promSample, error) {
	b, err := httpGet(base+"/api/v1/query?query="+url.QueryEscape(q), http.StatusOK)
	if err != nil {
		return nil, err
	}
	var res struct {
		Status string
		Data   struct{ Result []promSample }
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Status != "success" {
		return nil, fmt.Errorf("query %s: %v %s", q, err, b)
	}
	return res.Data.Result, nil
}

// alertNames lists the alerting rules of a Prometheus rule file.
func alertNames(t *testing.T, path string) []string {
	t.Helper()
	docs, err := readYAMLDocs(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range ylist(docs[0]["groups"]) {
		for _, r := range ylist(ydig(g, "rules")) {
			if a := ystr(ydig(r, "alert")); a != "" {
				names = append(names, a)
			}
		}
	}
	return names
}

// promRulesLoaded asks the Prometheus at base for its rules: every rule
// evaluated without error, and its alerting rules exactly want.
func promRulesLoaded(base string, want []string) error {
	b, err := httpGet(base+"/api/v1/rules", http.StatusOK)
	if err != nil {
		return err
	}
	var res struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []struct{ Name, Type, Health, LastError string }
			}
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	var alerts []string
	for _, g := range res.Data.Groups {
		for _, r := range g.Rules {
			if r.Health != "ok" {
				return fmt.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
			}
			if r.Type == "alerting" {
				alerts = append(alerts, r.Name)
			}
		}
	}
	want = slices.Clone(want)
	sort.Strings(alerts)
	sort.Strings(want)
	if len(want) == 0 || !slices.Equal(alerts, want) {
		return fmt.Errorf("alerting rules %v, want %v", alerts, want)
	}
	return nil
}

// waitUp waits until `up` of the target at addr is want ("1" or "0").
func (p *composePrometheus) waitUp(t *testing.T, addr, want string, timeout time.Duration) {
	t.Helper()
	testutil.CheckFor(t, timeout, fmt.Sprintf("prometheus: up{instance=%q} == %s", addr, want), func() error {
		res, err := p.query(fmt.Sprintf(`up{instance=%q}`, addr))
		if err != nil {
			return err
		}
		if len(res) != 1 || len(res[0].Value) != 2 || res[0].Value[1] != want {
			return fmt.Errorf("%v", res)
		}
		return nil
	})
}

// check waits until every target is up under its job, the rollcall
// metrics of the services have samples, and every alerting rule is loaded
// and evaluated without error.
func (p *composePrometheus) check(t *testing.T, services []*composeProc, timeout time.Duration) {
	t.Helper()
	for _, s := range services {
		if _, ok := p.targets[s.httpAddr]; !ok {
			t.Errorf("prometheus does not scrape %s (%s)", s.name, s.httpAddr)
		}
	}
	testutil.CheckFor(t, timeout, "prometheus: every target up", func() error {
		res, err := p.query("up")
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, r := range res {
			if len(r.Value) != 2 || r.Value[1] != "1" {
				return fmt.Errorf("%v is %v", r.Metric, r.Value)
			}
			got[r.Metric["instance"]] = r.Metric["job"]
		}
		if !maps.Equal(got, p.targets) {
			return fmt.Errorf("up for %v, want %v", got, p.targets)
		}
		return nil
	})
	for q, job := range map[string]string{
		`rollcall_source_runs_total{outcome="success"}`: "rollcall-poller",
		`rollcall_sink_deliveries_total`:                "rollcall-notifier",
		`rollcall_source_healthy == 1`:                  "rollcall-poller",
	} {
		testutil.CheckFor(t, timeout, "prometheus: samples of "+q, func() error {
			res, err := p.query(q)
			if err != nil {
				return err
			}
			if len(res) == 0 {
				return errors.New("no samples")
			}
			for _, r := range res {
				if r.Metric["job"] != job {
					return fmt.Errorf("%v scraped by job %s, want %s", r.Metric, r.Metric["job"], job)
				}
			}
			return nil
		})
	}
	testutil.CheckFor(t, timeout, "prometheus: the alerting rules loaded and evaluated", func() error {
		return promRulesLoaded("http://"+p.addr, p.rules)
	})
}
