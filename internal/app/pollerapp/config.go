// Package pollerapp wires the poller service from its environment: NATS
// (embedded or remote), the configured sources, the poll loop and the
// operational HTTP endpoints. cmd/poller is a thin main around Run.
package pollerapp

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/envx"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/pkg/events"
)

// Config is the poller's environment (SPEC §3.4).
type Config struct {
	NATSURL   string `env:"NATS_URL"`
	NATSCreds string `env:"NATS_CREDS"`
	// NATSUser and NATSPassword (or the file holding it) authenticate as a
	// user of the server's configuration (deployments/nats/accounts.conf).
	NATSUser         string `env:"NATS_USER"`
	NATSPassword     string `env:"NATS_PASSWORD"`
	NATSPasswordFile string `env:"NATS_PASSWORD_FILE"`
	NATSCAFile       string `env:"NATS_CA_FILE"`
	NATSCertFile     string `env:"NATS_CERT_FILE"`
	NATSKeyFile      string `env:"NATS_KEY_FILE"`
	NATSReplicas     int    `env:"NATS_REPLICAS, default=1"`

	DataDir        string `env:"DATA_DIR, default=./data"`
	EmbeddedListen string `env:"EMBEDDED_NATS_LISTEN, default=127.0.0.1:4222"`
	// EmbeddedAuth is generate (users with passwords in DATA_DIR/auth) or
	// none (loopback only).
	EmbeddedAuth string `env:"EMBEDDED_NATS_AUTH, default=generate"`
	// EmbeddedTLSCert and EmbeddedTLSKey are the embedded server's
	// certificate and key (PEM files); required to listen beyond loopback.
	EmbeddedTLSCert string `env:"EMBEDDED_NATS_TLS_CERT"`
	EmbeddedTLSKey  string `env:"EMBEDDED_NATS_TLS_KEY"`

	EventsMaxAge          time.Duration `env:"EVENTS_MAX_AGE, default=8760h"`
	EventsDuplicateWindow time.Duration `env:"EVENTS_DUPLICATE_WINDOW, default=24h"`
	EmitInitial           bool          `env:"EMIT_INITIAL, default=false"`

	MaxRemovalRatio  float64       `env:"MAX_REMOVAL_RATIO, default=0.2"`
	RemovalGuardMin  int           `env:"REMOVAL_GUARD_MIN, default=10"`
	RemovalHold      time.Duration `env:"REMOVAL_HOLD, default=24h"`
	MaxResponseBytes int64         `env:"MAX_RESPONSE_BYTES, default=67108864"`
	// MaxRawBytes caps each user's raw record in events and the KV.
	MaxRawBytes int `env:"MAX_RAW_BYTES, default=65536"`

	// LeaseTTL is the lease period that lets several replicas share the
	// sources; 0 disables leases (one replica only).
	LeaseTTL time.Duration `env:"LEASE_TTL, default=30s"`
	PollerID string        `env:"POLLER_ID"`

	// Sources names several sources as name:kind pairs; each then reads the
	// VPP_, VPP2_ or VEEAM_ variables with the prefix <NAME>_.
	Sources string `env:"SOURCES"`

	// AllowInsecureHTTP lets a source URL (VPP_BASE_URL,
	// VPP_SERVICE_CONFIG_URL, VPP2_BASE_URL, VPP2_SERVICE_CONFIG_URL,
	// VEEAM_BASE_URL, and their SOURCES-prefixed forms) be http://, over which the sToken, API key or password travel
	// in clear text. It exists for the simulator and tests; each source
	// using it is logged as a warning at start. Loopback URLs are not
	// exempt: the variable must say so.
	AllowInsecureHTTP bool `env:"ALLOW_INSECURE_HTTP, default=false"`

	HTTPAddr  string `env:"HTTP_ADDR, default=127.0.0.1:9090"`
	LogFormat string `env:"LOG_FORMAT, default=text"`
	LogLevel  string `env:"LOG_LEVEL, default=info"`

	VPP   VPPConfig   `env:", prefix=VPP_"`
	VPP2  VPP2Config  `env:", prefix=VPP2_"`
	Veeam VeeamConfig `env:", prefix=VEEAM_"`
}

// VPPConfig enables and tunes a vpp source.
type VPPConfig struct {
	SToken           string        `env:"STOKEN"`
	STokenFile       string        `env:"STOKEN_FILE"`
	BaseURL          string        `env:"BASE_URL, default=https://vpp.itunes.apple.com/mdm"`
	ServiceConfigURL string        `env:"SERVICE_CONFIG_URL"`
	Interval         time.Duration `env:"INTERVAL, default=15m"`
	FullSyncInterval time.Duration `env:"FULL_SYNC_INTERVAL, default=24h"`
}

func (c VPPConfig) enabled() bool { return c.SToken != "" || c.STokenFile != "" }

// VPP2Config enables and tunes a vpp2 source (App and Book Management API
// v2, SPEC §1.4). ServiceConfigURL defaults to BASE_URL/service/config.
type VPP2Config struct {
	SToken           string        `env:"STOKEN"`
	STokenFile       string        `env:"STOKEN_FILE"`
	BaseURL          string        `env:"BASE_URL, default=https://vpp.itunes.apple.com/mdm/v2"`
	ServiceConfigURL string        `env:"SERVICE_CONFIG_URL"`
	Interval         time.Duration `env:"INTERVAL, default=15m"`
	FullSyncInterval time.Duration `env:"FULL_SYNC_INTERVAL, default=24h"`
}

func (c VPP2Config) enabled() bool { return c.SToken != "" || c.STokenFile != "" }

// VeeamConfig enables and tunes a veeam source.
type VeeamConfig struct {
	BaseURL            string        `env:"BASE_URL"`
	Token              string        `env:"TOKEN"`
	TokenFile          string        `env:"TOKEN_FILE"`
	Username           string        `env:"USERNAME"`
	Password           string        `env:"PASSWORD"`
	PasswordFile       string        `env:"PASSWORD_FILE"`
	Interval           time.Duration `env:"INTERVAL, default=5m"`
	PageSize           int           `env:"PAGE_SIZE, default=500"`
	CAFile             string        `env:"CA_FILE"`
	InsecureSkipVerify bool          `env:"INSECURE_SKIP_VERIFY, default=false"`
}

func (c VeeamConfig) enabled() bool { return c.BaseURL != "" }

// sourceSpec is one configured source before it is built.
type sourceSpec struct {
	Name   string
	Kind   string
	Prefix string // of its variables: "" for the single-source form, "EU_" with SOURCES
	VPP    VPPConfig
	VPP2   VPP2Config
	Veeam  VeeamConfig
}

// namedSource is what a SOURCES entry reads under its prefix.
type namedSource struct {
	VPP   VPPConfig   `env:", prefix=VPP_"`
	VPP2  VPP2Config  `env:", prefix=VPP2_"`
	Veeam VeeamConfig `env:", prefix=VEEAM_"`
}

// Load reads the configuration through l and checks what it can without I/O.
func Load(ctx context.Context, l envconfig.Lookuper) (Config, []sourceSpec, error) {
	var c Config
	if err := envx.Process(ctx, &c, l); err != nil {
		return Config{}, nil, fmt.Errorf("configuration: %w", err)
	}
	if err := c.natsAuthError(); err != nil {
		return Config{}, nil, err
	}
	switch {
	case c.NATSReplicas < 1 || c.NATSReplicas > 5:
		return Config{}, nil, fmt.Errorf("configuration: NATS_REPLICAS %d must be between 1 and 5", c.NATSReplicas)
	case !(c.MaxRemovalRatio > 0 && c.MaxRemovalRatio <= 1): // NaN too
		return Config{}, nil, fmt.Errorf("configuration: MAX_REMOVAL_RATIO %v must be above 0 and at most 1", c.MaxRemovalRatio)
	case c.RemovalGuardMin < 1:
		return Config{}, nil, fmt.Errorf("configuration: REMOVAL_GUARD_MIN %d must be at least 1", c.RemovalGuardMin)
	case c.LeaseTTL < 0 || c.LeaseTTL > 0 && c.LeaseTTL < time.Second:
		return Config{}, nil, fmt.Errorf("configuration: LEASE_TTL %s must be 0 (no leases) or at least 1s", c.LeaseTTL)
	case c.RemovalHold <= 0:
		return Config{}, nil, fmt.Errorf("configuration: REMOVAL_HOLD must be positive")
	case c.MaxRawBytes < 256:
		return Config{}, nil, fmt.Errorf("configuration: MAX_RAW_BYTES %d is below 256", c.MaxRawBytes)
	case c.EventsMaxAge <= 0:
		return Config{}, nil, fmt.Errorf("configuration: EVENTS_MAX_AGE %s must be positive", c.EventsMaxAge)
	case c.EventsDuplicateWindow <= 0 || c.EventsDuplicateWindow > c.EventsMaxAge:
		return Config{}, nil, fmt.Errorf("configuration: EVENTS_DUPLICATE_WINDOW %s must be positive and at most EVENTS_MAX_AGE", c.EventsDuplicateWindow)
	case c.MaxResponseBytes < 1024:
		return Config{}, nil, fmt.Errorf("configuration: MAX_RESPONSE_BYTES %d is below 1024", c.MaxResponseBytes)
	}
	var specs []sourceSpec
	if strings.TrimSpace(c.Sources) == "" {
		if c.VPP.enabled() {
			specs = append(specs, sourceSpec{Name: "vpp", Kind: events.KindVPP, VPP: c.VPP})
		}
		if c.VPP2.enabled() {
			specs = append(specs, sourceSpec{Name: "vpp2", Kind: events.KindVPP2, VPP2: c.VPP2})
		}
		if c.Veeam.enabled() {
			specs = append(specs, sourceSpec{Name: "veeam", Kind: events.KindVeeam, Veeam: c.Veeam})
		}
	} else {
		if c.VPP.enabled() || c.VPP2.enabled() || c.Veeam.enabled() {
			return Config{}, nil, fmt.Errorf("configuration: SOURCES is set, so VPP_STOKEN, VPP_STOKEN_FILE, VPP2_STOKEN, VPP2_STOKEN_FILE and VEEAM_BASE_URL are not used; give each source its own prefixed variables (e.g. SCHOOL_VPP_STOKEN_FILE)")
		}
		seen, prefixes := map[string]bool{}, map[string]string{}
		for _, entry := range strings.Split(c.Sources, ",") {
			name, kind, ok := strings.Cut(strings.TrimSpace(entry), ":")
			if !ok || !events.ValidSourceName(name) || !events.ValidKind(kind) {
				return Config{}, nil, fmt.Errorf("configuration: SOURCES entry %q: want name:vpp, name:vpp2 or name:veeam, the name in lower case letters, digits, - and _", entry)
			}
			if seen[name] {
				return Config{}, nil, fmt.Errorf("configuration: SOURCES names %q twice", name)
			}
			seen[name] = true
			prefix := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
			if other, dup := prefixes[prefix]; dup {
				return Config{}, nil, fmt.Errorf("configuration: SOURCES names %q and %q, which would both read the variables %s…; rename one", other, name, prefix)
			}
			prefixes[prefix] = name
			var ns namedSource
			if err := envx.ProcessPrefixed(ctx, &ns, l, prefix); err != nil {
				return Config{}, nil, fmt.Errorf("configuration: source %s: %w", name, err)
			}
			spec := sourceSpec{Name: name, Kind: kind, Prefix: prefix, VPP: ns.VPP, VPP2: ns.VPP2, Veeam: ns.Veeam}
			if kind == events.KindVPP && !ns.VPP.enabled() {
				return Config{}, nil, fmt.Errorf("configuration: source %s: set %sVPP_STOKEN or %sVPP_STOKEN_FILE", name, prefix, prefix)
			}
			if kind == events.KindVPP2 && !ns.VPP2.enabled() {
				return Config{}, nil, fmt.Errorf("configuration: source %s: set %sVPP2_STOKEN or %sVPP2_STOKEN_FILE", name, prefix, prefix)
			}
			if kind == events.KindVeeam && !ns.Veeam.enabled() {
				return Config{}, nil, fmt.Errorf("configuration: source %s: set %sVEEAM_BASE_URL", name, prefix)
			}
			specs = append(specs, spec)
		}
	}
	for _, s := range specs {
		switch {
		case s.Kind == events.KindVPP && s.VPP.Interval <= 0:
			return Config{}, nil, fmt.Errorf("configuration: %sVPP_INTERVAL must be positive", s.Prefix)
		case s.Kind == events.KindVPP && s.VPP.FullSyncInterval < 0:
			return Config{}, nil, fmt.Errorf("configuration: %sVPP_FULL_SYNC_INTERVAL %s must not be negative (0 makes every run a full sync)", s.Prefix, s.VPP.FullSyncInterval)
		case s.Kind == events.KindVPP2 && s.VPP2.Interval <= 0:
			return Config{}, nil, fmt.Errorf("configuration: %sVPP2_INTERVAL must be positive", s.Prefix)
		case s.Kind == events.KindVPP2 && s.VPP2.FullSyncInterval < 0:
			return Config{}, nil, fmt.Errorf("configuration: %sVPP2_FULL_SYNC_INTERVAL %s must not be negative (0 makes every run a full sync)", s.Prefix, s.VPP2.FullSyncInterval)
		case s.Kind == events.KindVeeam && s.Veeam.Interval <= 0:
			return Config{}, nil, fmt.Errorf("configuration: %sVEEAM_INTERVAL must be positive", s.Prefix)
		case s.Kind == events.KindVeeam && (s.Veeam.PageSize < 1 || s.Veeam.PageSize > 500):
			return Config{}, nil, fmt.Errorf("configuration: %sVEEAM_PAGE_SIZE %d must be between 1 and 500", s.Prefix, s.Veeam.PageSize)
		}
		if vars := s.insecureURLs(); len(vars) > 0 && !c.AllowInsecureHTTP {
			// The URL itself is not repeated: it may carry credentials.
			return Config{}, nil, fmt.Errorf("configuration: %s is an http:// URL, which would send %s in clear text: "+
				"use an https:// URL (only for the simulator and tests, set ALLOW_INSECURE_HTTP=true)", vars[0], s.credential())
		}
	}
	return c, specs, nil
}

// insecureURLs names the variables of s that hold an http:// URL.
func (s sourceSpec) insecureURLs() []string {
	var vars []string
	for _, u := range s.insecure() {
		vars = append(vars, u.Var)
	}
	return vars
}

// insecureURL is a variable of a source that holds an http:// URL.
type insecureURL struct {
	Var string
	// Loopback: the URL's host is this machine (the simulator, a test),
	// so the credentials do not cross a network.
	Loopback bool
}

func (s sourceSpec) insecure() []insecureURL {
	var urls [][2]string // variable, value
	switch s.Kind {
	case events.KindVPP:
		urls = [][2]string{{"VPP_BASE_URL", s.VPP.BaseURL}, {"VPP_SERVICE_CONFIG_URL", s.VPP.ServiceConfigURL}}
	case events.KindVPP2:
		urls = [][2]string{{"VPP2_BASE_URL", s.VPP2.BaseURL}, {"VPP2_SERVICE_CONFIG_URL", s.VPP2.ServiceConfigURL}}
	case events.KindVeeam:
		urls = [][2]string{{"VEEAM_BASE_URL", s.Veeam.BaseURL}}
	}
	var out []insecureURL
	for _, u := range urls {
		v := strings.TrimSpace(u[1])
		if strings.HasPrefix(strings.ToLower(v), "http:") {
			pu, err := url.Parse(v)
			out = append(out, insecureURL{Var: s.Prefix + u[0], Loopback: err == nil && loopback(pu.Hostname())})
		}
	}
	return out
}

// credential names what the requests of s carry.
func (s sourceSpec) credential() string {
	if events.AppleKind(s.Kind) {
		return "the sToken"
	}
	return "the API key or password"
}

// natsClient is how the service reaches NATS at url, with the password read
// from NATS_PASSWORD_FILE when that is set.
func (c Config) natsClient(url, name string) (natsutil.ClientConfig, error) {
	pw, err := secret.Resolve("NATS_PASSWORD", c.NATSPassword, c.NATSPasswordFile)
	if err != nil {
		return natsutil.ClientConfig{}, fmt.Errorf("configuration: %w", err)
	}
	return natsutil.ClientConfig{URL: url, Name: name, Creds: c.NATSCreds, User: c.NATSUser, Password: pw,
		CAFile: c.NATSCAFile, CertFile: c.NATSCertFile, KeyFile: c.NATSKeyFile}, nil
}

// natsAuthError checks the NATS credentials variables against each other.
func (c Config) natsAuthError() error {
	switch {
	case (c.NATSPassword != "" || c.NATSPasswordFile != "") && c.NATSUser == "":
		return fmt.Errorf("configuration: NATS_PASSWORD or NATS_PASSWORD_FILE is set but NATS_USER is not")
	case c.NATSUser != "" && c.NATSCreds != "":
		return fmt.Errorf("configuration: NATS_USER and NATS_CREDS are both set; use one")
	}
	return nil
}
