package notifierapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/cli"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/envx"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/ops"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/internal/web"
)

// WebConfig is the audit console's own environment (docs/CONSOLE.md); the
// NATS connection and the sinks are the notifier's (Config).
type WebConfig struct {
	// Addr is where the console listens. A login configured
	// (HtpasswdFile, or a trusted proxy) is asked of every request, on
	// loopback too; without one only a loopback address is allowed, and
	// nobody logs in.
	Addr         string `env:"WEB_ADDR, default=127.0.0.1:9092"`
	HtpasswdFile string `env:"WEB_HTPASSWD_FILE"`
	// ProxyHeader names the header a reverse proxy at one of
	// TrustedProxies sets to the user it authenticated.
	ProxyHeader    string `env:"WEB_PROXY_USER_HEADER"`
	TrustedProxies string `env:"WEB_TRUSTED_PROXIES"`
	// The redrive user: NATS_* should be the read-only replay user, which
	// may not remove a redriven dead letter; redriving from the console
	// takes a user that may (the notifier's). Unset: no redrive button.
	RedriveUser         string `env:"WEB_REDRIVE_NATS_USER"`
	RedrivePassword     string `env:"WEB_REDRIVE_NATS_PASSWORD"`
	RedrivePasswordFile string `env:"WEB_REDRIVE_NATS_PASSWORD_FILE"`
	RedriveCreds        string `env:"WEB_REDRIVE_NATS_CREDS"`
	// Refresh is how often an open overview fetches its numbers again.
	Refresh time.Duration `env:"WEB_REFRESH, default=10s"`
}

// Console is a running audit console.
type Console struct {
	// URL is the console's address, e.g. http://127.0.0.1:9092/.
	URL string
	// Login says whether every request must log in (a login is
	// configured), or none does (loopback without one).
	Login bool
	done  chan error
}

// Wait returns once the console has stopped (its context ended), with
// why it stopped if not for that.
func (c *Console) Wait() error { return <-c.done }

// StartConsole starts the audit console with the configuration env
// holds (the notifier's variables and WebConfig's): it connects to NATS,
// binds WEB_ADDR at once (":0" picks a free port; URL says which) and
// serves until ctx ends. stdout is where a console sink writes what a
// redrive sends it.
func StartConsole(ctx context.Context, env envconfig.Lookuper, stdout io.Writer, log *slog.Logger) (*Console, error) {
	cfg, err := Load(ctx, env)
	if err != nil {
		return nil, err
	}
	var wc WebConfig
	if err := envx.Process(ctx, &wc, env); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if wc.Refresh <= 0 {
		return nil, errors.New("configuration: WEB_REFRESH must be positive")
	}
	access, err := wc.access()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", wc.Addr)
	if err != nil {
		return nil, fmt.Errorf("configuration: WEB_ADDR %s: %w (%s)", wc.Addr, err, ops.BindHint(err, "another process listens there: set WEB_ADDR to a free address"))
	}
	conns, err := consoleConns(cfg, wc, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv, err := newConsole(cfg, conns, web.Config{Access: access, Refresh: wc.Refresh, Log: log}, stdout)
	if err != nil {
		conns.close()
		ln.Close()
		return nil, err
	}
	c := &Console{URL: "http://" + displayAddr(ln.Addr()) + "/", Login: access.LoginConfigured(), done: make(chan error, 1)}
	go func() {
		defer conns.close()
		c.done <- srv.Run(ctx, ln)
	}()
	return c, nil
}

// displayAddr is the listener's address as a browser on this machine
// reaches it: an unspecified host (0.0.0.0, ::) becomes 127.0.0.1.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}

// access reads who may use the console.
func (wc WebConfig) access() (web.Access, error) {
	a := web.Access{Loopback: web.IsLoopback(wc.Addr), ProxyHeader: http.CanonicalHeaderKey(strings.TrimSpace(wc.ProxyHeader))}
	if wc.HtpasswdFile != "" {
		users, err := web.LoadHtpasswd(wc.HtpasswdFile)
		if err != nil {
			return a, fmt.Errorf("configuration: WEB_HTPASSWD_FILE: %w", err)
		}
		a.Htpasswd = users
	}
	proxies, err := web.ParseProxies(wc.TrustedProxies)
	if err != nil {
		return a, fmt.Errorf("configuration: WEB_TRUSTED_PROXIES: %w", err)
	}
	a.TrustedProxies = proxies
	if (a.ProxyHeader == "") != (len(proxies) == 0) {
		return a, errors.New("configuration: WEB_PROXY_USER_HEADER and WEB_TRUSTED_PROXIES go together: the header is believed only from those addresses")
	}
	if err := a.Check(); err != nil {
		return a, fmt.Errorf("configuration: WEB_ADDR %s: %w; set WEB_HTPASSWD_FILE (bcrypt, htpasswd -B) or WEB_PROXY_USER_HEADER with WEB_TRUSTED_PROXIES, or listen on 127.0.0.1", wc.Addr, err)
	}
	return a, nil
}

// conns are the console's NATS connections: one to read (NATS_*), and one
// to redrive with (WEB_REDRIVE_NATS_*), nil when none is configured.
type conns struct {
	read, redrive *nats.Conn
}

func (c conns) close() {
	c.read.Close()
	if c.redrive != nil {
		c.redrive.Close()
	}
}

func consoleConns(cfg Config, wc WebConfig, log *slog.Logger) (conns, error) {
	cc, err := cfg.natsClient(cfg.NATSURL, "rollcall-console")
	if err != nil {
		return conns{}, err
	}
	read, err := natsutil.Connect(cc, slog.New(expectedRefusals{log.Handler()}))
	if err != nil {
		return conns{}, err
	}
	if wc.RedriveUser == "" && wc.RedriveCreds == "" {
		return conns{read: read}, nil
	}
	pw, err := secret.Resolve("WEB_REDRIVE_NATS_PASSWORD", wc.RedrivePassword, wc.RedrivePasswordFile)
	if err != nil {
		read.Close()
		return conns{}, fmt.Errorf("configuration: %w", err)
	}
	rc := cc
	rc.Name, rc.User, rc.Password, rc.Creds = "rollcall-console-redrive", wc.RedriveUser, pw, wc.RedriveCreds
	redrive, err := natsutil.Connect(rc, log)
	if err != nil {
		read.Close()
		return conns{}, err
	}
	return conns{read: read, redrive: redrive}, nil
}

// newConsole builds the console: the sinks of the configuration (none
// when it holds none: a read-only console) and, with a redrive
// connection, redrive through them.
func newConsole(cfg Config, c conns, wcfg web.Config, stdout io.Writer) (*web.Server, error) {
	js, err := jetstream.New(c.read)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	wcfg.JS = js
	routes, rerr := buildRoutes(cfg, stdout)
	if rerr == nil {
		for _, r := range routes {
			wcfg.Sinks = append(wcfg.Sinks, web.Sink{Name: r.Sink.Name(), Kind: sinkKind(r.Sink)})
		}
	}
	if c.redrive != nil {
		if rerr != nil {
			return nil, fmt.Errorf("WEB_REDRIVE_NATS_USER is set, but redriving needs the sinks: %w", rerr)
		}
		rjs, err := jetstream.New(c.redrive)
		if err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		wcfg.Redrive = func(ctx context.Context, sink, id string) (deadletter.RedriveStats, error) {
			return redrive(ctx, rjs, routes, sink, id, io.Discard)
		}
	}
	return web.New(wcfg)
}

// redrive sends dead letters again through the configured sinks, as
// `notifier deadletter redrive` does: a sink that is not configured is
// named, and a sink whose endpoint moved is refused (its consumer
// delivered elsewhere).
func redrive(ctx context.Context, js jetstream.JetStream, routes []notifier.Route, sink, id string, progress io.Writer) (deadletter.RedriveStats, error) {
	senders := map[string]deadletter.Sender{}
	for _, r := range routes {
		senders[r.Sink.Name()] = r.Sink
	}
	if sink != "" && senders[sink] == nil {
		left := ""
		if entries, err := deadletter.List(ctx, js, sink); err == nil && len(entries) > 0 {
			left = fmt.Sprintf("; its %d dead letter(s) stay where they are", len(entries))
		}
		return deadletter.RedriveStats{}, fmt.Errorf("--sink %s: no such sink is configured (configured: %s)%s", console.Value(sink), strings.Join(configuredNames(routes), ", "), left)
	}
	check := routes
	if sink != "" {
		check = slices.DeleteFunc(slices.Clone(routes), func(r notifier.Route) bool { return r.Sink.Name() != sink })
	}
	if err := endpointHint(notifier.CheckEndpoints(ctx, js, check)); err != nil {
		return deadletter.RedriveStats{}, err
	}
	return deadletter.Redrive(ctx, js, senders, sink, id, progress)
}

const webUsage = "Serves the audit console (docs/CONSOLE.md) on WEB_ADDR until stopped: sources, sinks, events per day,\n" +
	"search, a person's timeline, the directory as of a time, dead letters. Run it with the read-only\n" +
	"replay NATS user; WEB_REDRIVE_NATS_USER (the notifier's) lets it redrive dead letters.\n\n"

// Web runs `notifier web`.
func Web(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notifier web", flag.ContinueOnError)
	if help, err := cli.Parse(fs, args, stdout, webUsage+envx.Usage(&WebConfig{})+"\n"+usageMore); help || err != nil {
		return err
	}
	cfg, err := Load(ctx, env)
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	c, err := StartConsole(ctx, env, stdout, log)
	if err != nil {
		return err
	}
	login := "none (loopback, no login configured)"
	if c.Login {
		login = "required"
	}
	log.Info("console serving", "url", c.URL, "login", login)
	return c.Wait()
}

// expectedRefusals says at debug level what NATS logs as a warning when the
// read-only replay user is refused the KV buckets: the console asks for
// them in case it may read them, and says itself, once, what it does
// without them.
type expectedRefusals struct{ slog.Handler }

func (h expectedRefusals) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && refusedKV(r) {
		if !h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h expectedRefusals) WithAttrs(as []slog.Attr) slog.Handler {
	return expectedRefusals{h.Handler.WithAttrs(as)}
}

func (h expectedRefusals) WithGroup(name string) slog.Handler {
	return expectedRefusals{h.Handler.WithGroup(name)}
}

// refusedKV reports whether r is about a refusal to read a KV bucket.
func refusedKV(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		v := a.Value.String()
		found = strings.Contains(v, "Permissions Violation") && strings.Contains(v, ".KV_rollcall_")
		return !found
	})
	return found
}
