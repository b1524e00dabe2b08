package pollerapp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/ops"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
	"github.com/rollcall/rollcall/internal/version"
	"github.com/rollcall/rollcall/pkg/events"
)

// ErrNoSource is returned when no source is configured.
var ErrNoSource = errors.New("no source configured: set VPP_STOKEN (or VPP_STOKEN_FILE) for Apple VPP, VPP2_STOKEN (or VPP2_STOKEN_FILE) for Apple's App and Book Management API v2, or VEEAM_BASE_URL with VEEAM_TOKEN (or VEEAM_USERNAME and VEEAM_PASSWORD) for Veeam")

// Run runs the poller until ctx ends. Configuration comes from env; logs go
// to stderr.
func Run(ctx context.Context, env envconfig.Lookuper, stderr io.Writer) error {
	cfg, specs, err := Load(ctx, env)
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if len(specs) == 0 {
		return ErrNoSource
	}
	if err := ops.SetMemoryLimit(log); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// What another process holds is refused before anything starts, so
	// that the cause is the first and only thing the operator reads.
	ln, err := ops.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close() // served and closed by RunListener, unless the start fails
	}
	build := version.Get()
	log.Info("rollcall poller starting", build.LogAttrs()...)
	for _, spec := range specs {
		for _, u := range spec.insecure() { // only with ALLOW_INSECURE_HTTP=true
			if u.Loopback {
				// The simulator or a test on this machine: nothing to warn of.
				log.Info("source URL is http:// on this machine (ALLOW_INSECURE_HTTP=true); use https:// for a real source",
					"source", spec.Name, "variable", u.Var)
				continue
			}
			log.Warn("source URL is http:// and ALLOW_INSECURE_HTTP=true: its credentials travel in clear text; use https:// outside the simulator and tests",
				"source", spec.Name, "variable", u.Var)
		}
	}
	reg := ops.NewRegistry()
	version.Register(reg, build)
	pm := metrics.NewPoller(reg)
	srcs := make([]poller.SourceConfig, 0, len(specs))
	for _, spec := range specs {
		sc, err := spec.sourceConfig(cfg, log, pm.API(spec.Name))
		if err != nil {
			return err
		}
		srcs = append(srcs, sc)
	}

	url := cfg.NATSURL
	var embeddedPassword string
	var inProcess *server.Server
	if url == "" {
		// Not before the configuration is checked: a mistyped variable
		// must not leave a DATA_DIR behind.
		release, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer release() // after the embedded server's shutdown, deferred below
		ns, pw, err := startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		// The server outlives the client connection: shut it down last.
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		url, embeddedPassword = ns.ClientURL(), pw
		if cfg.EmbeddedTLSCert != "" {
			// Its certificate names the host others reach it by; the
			// poller itself connects in process, where TLS is not asked.
			inProcess = ns
			url = strings.Replace(url, "tls://", "nats://", 1) // not asked in process
		}
	}
	cc, err := cfg.natsClient(url, "rollcall-poller")
	if err != nil {
		return err
	}
	cc.InProcess = inProcess
	if embeddedPassword != "" {
		cc.User, cc.Password = "poller", embeddedPassword
	}
	nc, err := natsutil.Connect(cc, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	// A publish ack lost in a failover must fail fast, so that bus.Publish
	// sends the event again (same id) within the run.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(3*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	h, err := bus.Ensure(sctx, js, bus.Config{Replicas: cfg.NATSReplicas, MaxAge: cfg.EventsMaxAge, DuplicateWindow: cfg.EventsDuplicateWindow})
	cancel()
	if err != nil {
		return stoppedOr(ctx, err)
	}
	if err := checkKinds(ctx, h.Users, specs); err != nil {
		return stoppedOr(ctx, err)
	}

	p := poller.New(js, h, poller.Config{
		EmitInitial: cfg.EmitInitial,
		Guard:       poller.Guard{MinRemovals: cfg.RemovalGuardMin, MaxRatio: cfg.MaxRemovalRatio, Hold: cfg.RemovalHold},
		Metrics:     pm,
		Lease:       poller.LeaseConfig{Owner: ownerID(cfg.PollerID), TTL: cfg.LeaseTTL},
		MaxPayload:  int(nc.MaxPayload()),
		MaxRawBytes: cfg.MaxRawBytes,
		Logger:      log,
	}, srcs...)

	checks := map[string]ops.Check{
		"nats": ops.NATSConnected(nc),
		// A stream deleted under a running poller would swallow events.
		"stream": func(ctx context.Context) error {
			_, err := js.Stream(ctx, bus.EventsStream)
			return err
		},
	}
	for _, sc := range srcs {
		name := sc.Source.Name()
		checks["source "+name] = func(context.Context) error { return sourceReady(p.Health()[name]) }
	}
	handler := ops.Handler(reg, checks)
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.Source.Name()
	}
	log.Info("poller started", "sources", names, "nats", nc.ConnectedUrlRedacted(), "emit_initial", cfg.EmitInitial)
	err = ops.RunListener(ctx, ln, handler, log, p.Run)
	log.Info("poller stopped")
	return err
}

// startEmbedded starts the embedded NATS server, with the users of
// EMBEDDED_NATS_AUTH=generate, and returns it and the poller's password
// ("" without authentication).
func startEmbedded(cfg Config, log *slog.Logger) (*server.Server, string, error) {
	if err := checkEmbeddedListen(cfg, log); err != nil {
		return nil, "", err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, "", fmt.Errorf("DATA_DIR %s: %w", cfg.DataDir, err)
	}
	ec := natsutil.EmbeddedConfig{StoreDir: filepath.Join(dir, "nats"), Listen: cfg.EmbeddedListen,
		TLSCert: cfg.EmbeddedTLSCert, TLSKey: cfg.EmbeddedTLSKey}
	var pw map[string]string
	if cfg.EmbeddedAuth == AuthGenerate {
		if pw, err = EnsureEmbeddedAuth(dir); err != nil {
			return nil, "", err
		}
		ec.Auth = embeddedAuthConfig(pw)
	}
	ns, err := natsutil.StartEmbedded(ec, log)
	var le *natsutil.ListenError
	if errors.As(err, &le) {
		return nil, "", fmt.Errorf("EMBEDDED_NATS_LISTEN %s: %v: %s", le.Addr, le.Err,
			ops.BindHint(le.Err, "another process listens there, perhaps a second poller or a NATS server; set EMBEDDED_NATS_LISTEN to a free address, or NATS_URL to use that server"))
	}
	if err != nil {
		return nil, "", err
	}
	if pw != nil {
		log.Info("the embedded NATS server requires a user: the notifier connects with NATS_USER=notifier and NATS_PASSWORD_FILE="+
			filepath.Join(dir, AuthDir, "notifier.password")+" (replay and admin likewise)", "auth_dir", filepath.Join(dir, AuthDir))
	}
	return ns, pw["poller"], nil
}

// sourceReady turns a source's health into readiness: a stopped or failing
// source is not ready; held removals are reported without failing.
func sourceReady(h poller.Health) error {
	switch h.State {
	case poller.StateStandby:
		return nil // another replica polls it
	case poller.StateStopped:
		return fmt.Errorf("stopped: %s", h.Error)
	case poller.StateFailing:
		return fmt.Errorf("last run failed: %s", h.Error)
	}
	var degraded []string
	if h.RemovalsHeld > 0 {
		degraded = append(degraded, fmt.Sprintf("%d removals held by the mass-removal guard", h.RemovalsHeld))
	}
	if h.Uncarried > 0 {
		degraded = append(degraded, fmt.Sprintf("%d users too large to store (see the log)", h.Uncarried))
	}
	if len(degraded) > 0 {
		return ops.Degraded(strings.Join(degraded, "; "))
	}
	return nil
}

// sourceConfig builds the source and what the poller needs to rebuild it
// when its credential files change.
func (s sourceSpec) sourceConfig(cfg Config, log *slog.Logger, obs httpx.Observer) (poller.SourceConfig, error) {
	build := func() (poller.Source, error) { return s.build(cfg, log, obs) }
	src, err := build()
	if err != nil {
		return poller.SourceConfig{}, err
	}
	sc := poller.SourceConfig{Source: src, Reload: build}
	switch s.Kind {
	case events.KindVPP:
		sc.Interval, sc.FullSyncInterval = s.VPP.Interval, s.VPP.FullSyncInterval
		if s.VPP.STokenFile != "" {
			sc.Watch = []string{s.VPP.STokenFile}
			sc.Hint = "download a new content token from Apple School/Business Manager and write it to " + s.Prefix + "VPP_STOKEN_FILE"
		} else {
			sc.Hint = "download a new content token from Apple School/Business Manager and set " + s.Prefix + "VPP_STOKEN (better: " + s.Prefix + "VPP_STOKEN_FILE)"
		}
	case events.KindVPP2:
		sc.Interval, sc.FullSyncInterval = s.VPP2.Interval, s.VPP2.FullSyncInterval
		if s.VPP2.STokenFile != "" {
			sc.Watch = []string{s.VPP2.STokenFile}
			sc.Hint = "download a new content token from Apple School/Business Manager and write it to " + s.Prefix + "VPP2_STOKEN_FILE"
		} else {
			sc.Hint = "download a new content token from Apple School/Business Manager and set " + s.Prefix + "VPP2_STOKEN (better: " + s.Prefix + "VPP2_STOKEN_FILE)"
		}
	case events.KindVeeam:
		sc.Interval = s.Veeam.Interval
		for _, f := range []string{s.Veeam.TokenFile, s.Veeam.PasswordFile} {
			if f != "" {
				sc.Watch = append(sc.Watch, f)
			}
		}
		sc.Hint = "create an API key for a user allowed to list users and write it to " + s.Prefix + "VEEAM_TOKEN_FILE"
	}
	return sc, nil
}

// build constructs the source client, reading its secret files afresh.
func (s sourceSpec) build(cfg Config, log *slog.Logger, obs httpx.Observer) (poller.Source, error) {
	p := s.Prefix
	if s.Kind == events.KindVPP {
		stoken, err := secret.Resolve(p+"VPP_STOKEN", s.VPP.SToken, s.VPP.STokenFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		c, err := vpp.New(vpp.Config{Name: s.Name, BaseURL: s.VPP.BaseURL, ServiceConfigURL: s.VPP.ServiceConfigURL, SToken: stoken,
			MaxBodyBytes: cfg.MaxResponseBytes, Logger: log, Observer: obs})
		if err != nil {
			return nil, s.settingError(err)
		}
		if info, ok := c.TokenInfo(); ok {
			log.Info("vpp token decoded", "source", s.Name, "organisation", info.OrgName, "expires", info.ExpDate.Format(time.RFC3339))
		} else {
			log.Warn("the vpp token does not decode as an Apple content token; its expiry cannot be reported", "source", s.Name)
		}
		return vppSource{c}, nil
	}
	if s.Kind == events.KindVPP2 {
		return s.buildVPP2(cfg, log, obs)
	}
	token, err := secret.Resolve(p+"VEEAM_TOKEN", s.Veeam.Token, s.Veeam.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	password, err := secret.Resolve(p+"VEEAM_PASSWORD", s.Veeam.Password, s.Veeam.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if token == "" && (s.Veeam.Username == "" || password == "") {
		return nil, fmt.Errorf("configuration: %sVEEAM_BASE_URL is set but no credentials: set %sVEEAM_TOKEN (an API key) or %sVEEAM_USERNAME and %sVEEAM_PASSWORD", p, p, p, p)
	}
	c, err := veeam.New(veeam.Config{Name: s.Name, BaseURL: s.Veeam.BaseURL, Token: token, Username: s.Veeam.Username,
		Password: password, PageSize: s.Veeam.PageSize, CAFile: s.Veeam.CAFile, InsecureSkipVerify: s.Veeam.InsecureSkipVerify,
		MaxBodyBytes: cfg.MaxResponseBytes, Logger: log, Observer: obs})
	if err != nil {
		return nil, s.settingError(err)
	}
	return c, nil
}

// settingError says once what a source client refused: the variable as the
// operator wrote it (with its SOURCES prefix), the value where it may be
// repeated, and why; or, for anything else, the source.
func (s sourceSpec) settingError(err error) error {
	var se *sources.SettingError
	if errors.As(err, &se) {
		named := *se
		named.Setting = s.Prefix + se.Setting
		return fmt.Errorf("configuration: %w", &named)
	}
	return fmt.Errorf("configuration: source %s: %w", s.Name, err)
}

// buildVPP2 constructs a vpp2 client; it reports its sToken's expiry itself.
func (s sourceSpec) buildVPP2(cfg Config, log *slog.Logger, obs httpx.Observer) (poller.Source, error) {
	stoken, err := secret.Resolve(s.Prefix+"VPP2_STOKEN", s.VPP2.SToken, s.VPP2.STokenFile)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	c, err := vpp2.New(vpp2.Config{Name: s.Name, BaseURL: s.VPP2.BaseURL, ServiceConfigURL: s.VPP2.ServiceConfigURL, SToken: stoken,
		MaxBodyBytes: cfg.MaxResponseBytes, Logger: log, Observer: obs})
	if err != nil {
		return nil, s.settingError(err)
	}
	if info, ok := c.TokenInfo(); ok {
		log.Info("vpp2 token decoded", "source", s.Name, "organisation", info.OrgName, "expires", info.ExpDate.Format(time.RFC3339))
	} else {
		log.Warn("the vpp2 token does not decode as an Apple content token; its expiry cannot be reported", "source", s.Name)
	}
	return c, nil
}

// vppSource adds the sToken's expiry to the VPP client, for the poller's
// expiry metric and warning.
type vppSource struct{ *vpp.Client }

func (v vppSource) TokenExpiry() (time.Time, bool) {
	info, ok := v.TokenInfo()
	return info.ExpDate, ok && !info.ExpDate.IsZero()
}

// ownerID names this replica in leases: POLLER_ID, or host name, process id
// and a random suffix, so that two replicas on one host differ too.
func ownerID(configured string) string {
	if configured != "" {
		return configured
	}
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// stoppedOr is nil when ctx ended (a stop while the poller was starting is
// no failure: a step it cut short says "context canceled"), else err.
func stoppedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
