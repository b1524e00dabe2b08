// Command simulator serves Apple VPP's getVPPUsersSrv, the same directory on
// Apple's App and Book Management API v2 (/mdm/v2/users), and Veeam's
// /api/v3/users from a seeded directory that changes every few seconds.
//
//	simulator [serve]   serve the APIs (flags or SIM_* environment)
//	simulator demo      the whole pipeline in one process: simulator, poller
//	                    with embedded NATS, notifier printing events
//	simulator soak      randomized schedules of changes, faults and crashes
//	                    through the whole pipeline, checked against an oracle
//	                    (internal/simulation, docs/RELIABILITY.md)
//
// The benchmark is a command of its own: go run ./cmd/bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/cli"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ue *cli.UsageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "simulator: %v\n\n%s", err, ue.Usage)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "simulator:", err)
		os.Exit(1)
	}
}

type options struct {
	addr    string
	users   int
	churn   time.Duration
	seed    int64
	vppTok  string
	veeamTk string
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

// errHelp ends a command that printed its usage because it was asked to.
var errHelp = errors.New("help shown")

func parse(name string, args []string, stdout io.Writer, defAddr, defChurn string) (options, error) {
	var o options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	users, err := strconv.Atoi(envOr("SIM_USERS", "20"))
	if err != nil || users < 0 {
		return o, fmt.Errorf("SIM_USERS=%q: want a number of users, such as 40", os.Getenv("SIM_USERS"))
	}
	churn, err := time.ParseDuration(envOr("SIM_CHURN", defChurn))
	if err != nil {
		return o, fmt.Errorf("SIM_CHURN=%q: want a duration, such as 3s (0 = never)", os.Getenv("SIM_CHURN"))
	}
	seed, err := strconv.ParseInt(envOr("SIM_SEED", "1"), 10, 64)
	if err != nil {
		return o, fmt.Errorf("SIM_SEED=%q: want an integer", os.Getenv("SIM_SEED"))
	}
	fs.StringVar(&o.addr, "addr", envOr("SIM_ADDR", defAddr), "listen address (SIM_ADDR)")
	fs.IntVar(&o.users, "users", users, "generated users per API besides the fixtures' (SIM_USERS)")
	fs.DurationVar(&o.churn, "churn", churn, "interval between changes; 0 = never (SIM_CHURN)")
	fs.Int64Var(&o.seed, "seed", seed, "random seed of the churn (SIM_SEED)")
	fs.StringVar(&o.vppTok, "vpp-stoken", envOr("SIM_VPP_STOKEN", simulator.DefaultVPPToken), "sToken the VPP API accepts (SIM_VPP_STOKEN)")
	fs.StringVar(&o.veeamTk, "veeam-token", envOr("SIM_VEEAM_TOKEN", simulator.DefaultVeeamToken), "bearer token the Veeam API accepts (SIM_VEEAM_TOKEN)")
	return o, parseFlags(fs, args, stdout, "Each flag's variable (SIM_*) sets its default.\n")
}

// parseFlags is cli.Parse for the simulator's commands: help ends the
// command with errHelp, which run turns into exit 0.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, more string) error {
	help, err := cli.Parse(fs, args, stdout, more)
	if help && err == nil {
		return errHelp
	}
	return err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version" || args[0] == "-version") {
		_, err := fmt.Fprintln(stdout, version.Get().String("simulator"))
		return err
	}
	if len(args) > 0 && cli.IsHelp(args[0]) {
		_, err := fmt.Fprint(stdout, usage)
		return err
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, stdout, stderr)
	case "demo":
		err = demo(ctx, args, stdout, stderr)
	case "bench":
		// Moved in issue 16; the pointer goes with the next release.
		err = &cli.UsageError{Err: errors.New("bench moved to its own command: go run ./cmd/bench (the same flags; docs/BENCHMARKS.md)"), Usage: usage}
	case "soak":
		err = soak(ctx, args, stdout, stderr)
	default:
		err = &cli.UsageError{Err: fmt.Errorf("unknown command %q", cmd), Usage: usage}
	}
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

const usage = `usage: simulator [command] [flags]

commands:
  serve     serve the fake VPP, VPP v2 and Veeam APIs on -addr (the default command)
  demo      simulator, poller with embedded NATS and notifier printing events
  soak      randomized simulations for a while (docs/RELIABILITY.md)
  version   the build

"simulator <command> --help" lists a command's flags. The benchmark moved
to a command of its own: go run ./cmd/bench (docs/BENCHMARKS.md).
`

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse("simulator serve", args, stdout, "127.0.0.1:8080", "3s")
	if err != nil {
		return err
	}
	sim := simulator.New(simulator.Config{Users: o.users, Seed: o.seed, VPPToken: o.vppTok, VeeamToken: o.veeamTk})
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (use -addr or SIM_ADDR)", o.addr, err)
	}
	base := "http://" + localAddr(ln.Addr())
	// The demo tokens are printed to copy; tokens the operator chose are
	// not repeated into logs, but named in a form a shell leaves alone.
	vppTok := shownToken(o.vppTok, simulator.DefaultVPPToken, "SIM_VPP_STOKEN", "-vpp-stoken")
	veeamTok := shownToken(o.veeamTk, simulator.DefaultVeeamToken, "SIM_VEEAM_TOKEN", "-veeam-token")
	changes := "changing a user every " + o.churn.String()
	if o.churn <= 0 {
		changes = "never changing (-churn 0)"
	}
	fmt.Fprintf(stderr, "simulator listening on %s, %s\n%s", base, changes, pollerCommand(base, vppTok, veeamTok))
	return serveUntil(ctx, ln, sim, o.churn, func(c string) { fmt.Fprintln(stderr, "change:", c) })
}

// localAddr is how a poller on this machine reaches a listener: an
// unspecified host (0.0.0.0, ::) as 127.0.0.1, which the poller knows for
// loopback (and so does not warn that credentials travel in clear text).
func localAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// shownToken is a token as serve prints it: the demo's own, or, for one
// the operator chose, a reference a shell expands (the variable it came
// from) or leaves alone (a quoted note), never the token itself.
func shownToken(tok, demo, env, flag string) string {
	switch {
	case tok == demo:
		return tok
	case os.Getenv(env) == tok:
		return `"$` + env + `"`
	}
	return "'<the " + flag + " value>'"
}

// pollerCommand is what serve prints for a poller against the simulator:
// its variables, with intervals short enough that a change shows within
// seconds (the defaults poll every 5 and 15 minutes).
func pollerCommand(base, vppTok, veeamTok string) string {
	return "A poller against it, reporting changes within seconds (the simulator serves plain HTTP on this machine):\n" +
		"  VPP_BASE_URL=" + base + "/mdm VPP_STOKEN=" + vppTok + " VPP_INTERVAL=" + demoInterval + " VPP_FULL_SYNC_INTERVAL=" + demoFullSync + " \\\n" +
		"  VPP2_BASE_URL=" + base + "/mdm/v2 VPP2_STOKEN=" + vppTok + " VPP2_INTERVAL=" + demoInterval + " VPP2_FULL_SYNC_INTERVAL=" + demoFullSync + " \\\n" +
		"  VEEAM_BASE_URL=" + base + " VEEAM_TOKEN=" + veeamTok + " VEEAM_INTERVAL=" + demoInterval + " \\\n" +
		"  ALLOW_INSECURE_HTTP=true go run ./cmd/poller\n" +
		"(from the repository's root; with the binaries installed by go install ./cmd/..., poller instead of go run ./cmd/poller)\n"
}

// The demo's polling: every 2s, a full VPP listing every 10s.
const (
	demoInterval = "2s"
	demoFullSync = "10s"
)

func serveUntil(ctx context.Context, ln net.Listener, sim *simulator.Simulator, churn time.Duration, report func(string)) error {
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sim.Run(ctx, churn, report)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		wg.Wait()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// demo runs simulator, poller (embedded NATS in a temporary directory) and
// notifier (console) in one process, with short intervals so that changes
// show within seconds. Ctrl-C stops all three.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse("simulator demo", args, stdout, "127.0.0.1:0", "2s")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rollcall-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The embedded server requires a user per process (EMBEDDED_NATS_AUTH
	// generate): create the passwords first, so the notifier has its own.
	if _, err := pollerapp.EnsureEmbeddedAuth(dir); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	sim := simulator.New(simulator.Config{Users: o.users, Seed: o.seed, VPPToken: o.vppTok, VeeamToken: o.veeamTk})
	fmt.Fprintf(stderr, "rollcall demo: simulator at %s, NATS at nats://%s; changes every %s, polled every 2s. Ctrl-C stops.\n", base, natsAddr, o.churn)

	// ctx ends on Ctrl-C or when a part fails. The notifier stops first,
	// then the poller and the simulator (back): the notifier would
	// otherwise see its server go away and warn of a lost connection.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	back, stopBack := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBack()
	errs := make(chan error, 4)
	var wg, front sync.WaitGroup
	start := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	start(&wg, "simulator", func() error {
		return serveUntil(back, ln, sim, o.churn, func(c string) { fmt.Fprintln(stderr, "simulator change:", c) })
	})
	logLevel := envOr("LOG_LEVEL", "warn")
	pollerEnv := map[string]string{
		"DATA_DIR": dir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": logLevel,
		"VPP_BASE_URL": base + "/mdm", "VPP_STOKEN": o.vppTok, "VPP_INTERVAL": demoInterval, "VPP_FULL_SYNC_INTERVAL": demoFullSync,
		// The same directory on Apple's API v2: its users by clientUserId.
		"VPP2_BASE_URL": base + "/mdm/v2", "VPP2_STOKEN": o.vppTok, "VPP2_INTERVAL": demoInterval, "VPP2_FULL_SYNC_INTERVAL": demoFullSync,
		"VEEAM_BASE_URL": base, "VEEAM_TOKEN": o.veeamTk, "VEEAM_INTERVAL": demoInterval,
		// The simulator serves plain HTTP on loopback.
		"ALLOW_INSECURE_HTTP": "true",
	}
	start(&wg, "poller", func() error { return pollerapp.Run(back, envconfig.MapLookuper(pollerEnv), stderr) })
	notifierPassword := filepath.Join(dir, pollerapp.AuthDir, "notifier.password")
	// The notifier starts once the poller has made the stream, so that it
	// connects at its first try instead of warning that it is retrying.
	if waitForStream(ctx, "nats://"+natsAddr, notifierPassword) {
		notifierEnv := map[string]string{
			"NATS_URL": "nats://" + natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": logLevel, "CONSOLE": "true", "CONSOLE_FORMAT": "text", "SINK_START": "all",
			"NATS_USER": "notifier", "NATS_PASSWORD_FILE": notifierPassword,
		}
		start(&front, "notifier", func() error { return notifierapp.Run(ctx, envconfig.MapLookuper(notifierEnv), stdout, stderr) })
		// The audit console reads as the read-only replay user and
		// redrives dead letters as the notifier.
		consoleEnv := maps.Clone(notifierEnv)
		consoleEnv["WEB_ADDR"] = envOr("WEB_ADDR", "127.0.0.1:0")
		consoleEnv["NATS_USER"] = "replay"
		consoleEnv["NATS_PASSWORD_FILE"] = filepath.Join(dir, pollerapp.AuthDir, "replay.password")
		consoleEnv["WEB_REDRIVE_NATS_USER"] = "notifier"
		consoleEnv["WEB_REDRIVE_NATS_PASSWORD_FILE"] = notifierPassword
		con, err := notifierapp.StartConsole(ctx, envconfig.MapLookuper(consoleEnv), stdout,
			slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			errs <- fmt.Errorf("console: %w", err)
			cancel()
		} else {
			fmt.Fprintf(stderr, "rollcall demo: audit console at %s\n", con.URL)
			start(&front, "console", con.Wait)
		}
	}
	<-ctx.Done()
	front.Wait()
	stopBack()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// waitForStream waits until the events stream can be reached on url as the
// notifier, or ctx ends (false).
func waitForStream(ctx context.Context, url, passwordFile string) bool {
	for {
		if streamReady(ctx, url, passwordFile) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func streamReady(ctx context.Context, url, passwordFile string) bool {
	pw, err := os.ReadFile(passwordFile)
	if err != nil {
		return false
	}
	nc, err := natsutil.ConnectOnce(natsutil.ClientConfig{URL: url, Name: "rollcall-demo", User: "notifier", Password: strings.TrimSpace(string(pw))}, time.Second)
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = js.Stream(sctx, bus.EventsStream)
	return err == nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
