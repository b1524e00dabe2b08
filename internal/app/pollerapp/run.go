package pollerapp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/ops"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/vpp"
)

// ErrNoSource is returned when no source is configured.
var ErrNoSource = errors.New("no source configured: set VPP_STOKEN (or VPP_STOKEN_FILE) for Apple VPP, or VEEAM_BASE_URL with VEEAM_TOKEN (or VEEAM_USERNAME and VEEAM_PASSWORD) for Veeam")

// Run runs the poller until ctx ends. Configuration comes from env; logs go
// to stderr.
func Run(ctx context.Context, env envconfig.Lookuper, stderr io.Writer) error {
	cfg, err := Load(ctx, env)
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	srcs, err := buildSources(cfg, log)
	if err != nil {
		return err
	}

	url := cfg.NATSURL
	if url == "" {
		dir, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("DATA_DIR %s: %w", cfg.DataDir, err)
		}
		ns, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{StoreDir: filepath.Join(dir, "nats"), Listen: cfg.EmbeddedListen}, log)
		if err != nil {
			return err
		}
		// The server outlives the client connection: shut it down last.
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		url = ns.ClientURL()
	}
	nc, err := natsutil.Connect(natsutil.ClientConfig{URL: url, Name: "rollcall-poller", Creds: cfg.NATSCreds,
		CAFile: cfg.NATSCAFile, CertFile: cfg.NATSCertFile, KeyFile: cfg.NATSKeyFile}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	h, err := bus.Ensure(sctx, js, bus.Config{Replicas: cfg.NATSReplicas, MaxAge: cfg.EventsMaxAge, DuplicateWindow: cfg.EventsDuplicateWindow})
	cancel()
	if err != nil {
		return err
	}

	p := poller.New(js, h, poller.Config{EmitInitial: cfg.EmitInitial, Logger: log}, srcs...)

	handler := ops.Handler(ops.NewRegistry(), map[string]ops.Check{"nats": ops.NATSConnected(nc)})
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.Source.Name()
	}
	log.Info("poller started", "sources", names, "nats", nc.ConnectedUrlRedacted(), "emit_initial", cfg.EmitInitial)
	err = ops.RunService(ctx, cfg.HTTPAddr, handler, log, p.Run)
	log.Info("poller stopped")
	return err
}

func buildSources(cfg Config, log *slog.Logger) ([]poller.SourceConfig, error) {
	var out []poller.SourceConfig
	stoken, err := secret.Resolve("VPP_STOKEN", cfg.VPP.SToken, cfg.VPP.STokenFile)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if stoken != "" {
		c, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: cfg.VPP.BaseURL, SToken: stoken, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("configuration: source vpp: %w", err)
		}
		out = append(out, poller.SourceConfig{Source: c, Interval: cfg.VPP.Interval, FullSyncInterval: cfg.VPP.FullSyncInterval})
	}
	if cfg.Veeam.BaseURL != "" {
		token, err := secret.Resolve("VEEAM_TOKEN", cfg.Veeam.Token, cfg.Veeam.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		password, err := secret.Resolve("VEEAM_PASSWORD", cfg.Veeam.Password, cfg.Veeam.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		if token == "" && (cfg.Veeam.Username == "" || password == "") {
			return nil, errors.New("configuration: VEEAM_BASE_URL is set but no credentials: set VEEAM_TOKEN (an API key) or VEEAM_USERNAME and VEEAM_PASSWORD")
		}
		hc, err := httpClient(cfg.Veeam.CAFile)
		if err != nil {
			return nil, err
		}
		c, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: cfg.Veeam.BaseURL, Token: token, Username: cfg.Veeam.Username,
			Password: password, PageSize: cfg.Veeam.PageSize, HTTPClient: hc, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("configuration: source veeam: %w", err)
		}
		out = append(out, poller.SourceConfig{Source: c, Interval: cfg.Veeam.Interval})
	}
	if len(out) == 0 {
		return nil, ErrNoSource
	}
	return out, nil
}

// httpClient trusts caFile in addition to the system roots: Veeam servers
// commonly use self-signed certificates.
func httpClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("VEEAM_CA_FILE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("VEEAM_CA_FILE %s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
