// Package notifierapp wires the notifier service from its environment: the
// NATS connection, one sink per destination with its filter, and the
// operational HTTP endpoints. cmd/notifier is a thin main around Run.
package notifierapp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/envx"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// Config is the notifier's environment (SPEC §3.4).
type Config struct {
	NATSURL   string `env:"NATS_URL, default=nats://127.0.0.1:4222"`
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

	// Console is "true", "false" or empty (= on when no other sink is set).
	Console string `env:"CONSOLE"`
	// ConsoleFormat is how the console sink prints: json or text.
	ConsoleFormat string `env:"CONSOLE_FORMAT, default=json"`

	WebhookURL        []string      `env:"WEBHOOK_URL"`
	WebhookURLFile    string        `env:"WEBHOOK_URL_FILE"`
	WebhookSecret     string        `env:"WEBHOOK_SECRET"`
	WebhookSecretFile string        `env:"WEBHOOK_SECRET_FILE"`
	WebhookMode       string        `env:"WEBHOOK_MODE, default=binary"`
	WebhookTypes      []string      `env:"WEBHOOK_TYPES"`
	WebhookTimeout    time.Duration `env:"WEBHOOK_TIMEOUT, default=10s"`

	// Webhooks names the webhooks (WEBHOOKS=crm,hr), each configured by
	// WEBHOOK_<NAME>_URL (or _URL_FILE), _SECRET (or _SECRET_FILE) and
	// _TYPES: the other form to WEBHOOK_URL's places, and the one whose
	// consumers survive reordering. NamedWebhooks holds them, read.
	Webhooks      []string `env:"WEBHOOKS"`
	NamedWebhooks []NamedWebhook
	// AllowEndpointChange names sinks whose consumer may move to a new
	// endpoint on this start (a receiver that moved); otherwise a sink whose
	// URL changed is refused (notifier.EndpointChangedError).
	AllowEndpointChange []string `env:"ALLOW_ENDPOINT_CHANGE"`

	// AllowInsecureHTTP lets a webhook or Slack URL be http://: a Slack
	// URL is its own credential, and a webhook's signature secret is no
	// protection against a reader of the bodies. For test receivers only.
	AllowInsecureHTTP bool `env:"ALLOW_INSECURE_HTTP, default=false"`

	SlackWebhookURL     string   `env:"SLACK_WEBHOOK_URL"`
	SlackWebhookURLFile string   `env:"SLACK_WEBHOOK_URL_FILE"`
	SlackTypes          []string `env:"SLACK_TYPES"`
	// A burst of more than SlackDigestThreshold events within
	// SlackDigestWindow becomes one digest message; negative turns it off.
	SlackDigestThreshold int           `env:"SLACK_DIGEST_THRESHOLD, default=10"`
	SlackDigestWindow    time.Duration `env:"SLACK_DIGEST_WINDOW, default=1m"`

	Sources []string `env:"SINK_SOURCES"`
	// MaxAttempts is the delivery attempts before an event is
	// dead-lettered; 0 = as many as RetrySchedule has waits, plus one.
	MaxAttempts int `env:"MAX_ATTEMPTS, default=0"`
	// RetrySchedule is the wait before each retry.
	RetrySchedule []time.Duration `env:"RETRY_SCHEDULE, default=5s,5m,30m,2h,5h,10h,10h"`
	// SinkWindow is how many events a sink may hold at once (in flight,
	// waiting behind their user's earlier event, or waiting to retry).
	SinkWindow int `env:"SINK_WINDOW, default=1024"`
	// ProbeEvery is how often a sink that is down is probed.
	ProbeEvery time.Duration `env:"PROBE_EVERY, default=30s"`
	// MaxAge dead-letters an event that is older than this when a delivery
	// attempt fails (0 = no limit).
	MaxAge time.Duration `env:"MAX_AGE, default=0"`
	// SinkConcurrency is how many deliveries each sink has in flight, for
	// different users; a user's events are always delivered one by one.
	SinkConcurrency int           `env:"SINK_CONCURRENCY, default=16"`
	ShutdownGrace   time.Duration `env:"SHUTDOWN_GRACE, default=8s"`
	SinkStart       string        `env:"SINK_START, default=new"`

	// WebhookOverrides holds WEBHOOK_<n>_SECRET[_FILE] and WEBHOOK_<n>_TYPES,
	// which give the n-th webhook URL (1-based) its own secret and filter.
	WebhookOverrides map[int]WebhookOverride

	HTTPAddr  string `env:"HTTP_ADDR, default=127.0.0.1:9091"`
	LogFormat string `env:"LOG_FORMAT, default=text"`
	LogLevel  string `env:"LOG_LEVEL, default=info"`
}

// WebhookOverride is one webhook's own secret and filter.
type WebhookOverride struct {
	Secret     string   `env:"SECRET"`
	SecretFile string   `env:"SECRET_FILE"`
	Types      []string `env:"TYPES"`
}

// maxWebhooks bounds the WEBHOOK_<n>_ variables looked up.
const maxWebhooks = 32

// Load reads the configuration through l and checks it, before anything
// reaches NATS. The sink filters (WebhookTypes, SlackTypes, Sources and each
// override's Types) hold known event types and possible source names only,
// trimmed and without repeats; nil is every event (see filterList).
func Load(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	var c Config
	if err := envx.Process(ctx, &c, l); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	if err := c.natsAuthError(); err != nil {
		return Config{}, err
	}
	var err error
	c.WebhookOverrides = map[int]WebhookOverride{}
	for n := 1; n <= maxWebhooks; n++ {
		var o WebhookOverride
		if err := envx.ProcessPrefixed(ctx, &o, l, fmt.Sprintf("WEBHOOK_%d_", n)); err != nil {
			return Config{}, fmt.Errorf("configuration: %w", err)
		}
		if o.Types, err = filterList(l, fmt.Sprintf("WEBHOOK_%d_TYPES", n), typeList, events.CheckType); err != nil {
			return Config{}, err
		}
		if o.Secret != "" || o.SecretFile != "" || len(o.Types) > 0 {
			c.WebhookOverrides[n] = o
		}
	}
	if err := loadNamedWebhooks(ctx, l, &c); err != nil {
		return Config{}, err
	}
	if c.WebhookTypes, err = filterList(l, "WEBHOOK_TYPES", typeList, events.CheckType); err != nil {
		return Config{}, err
	}
	if c.SlackTypes, err = filterList(l, "SLACK_TYPES", typeList, events.CheckType); err != nil {
		return Config{}, err
	}
	if c.Sources, err = filterList(l, "SINK_SOURCES", "source names", events.CheckSourceName); err != nil {
		return Config{}, err
	}
	if err := c.checkWebhooks(); err != nil {
		return Config{}, err
	}
	switch c.Console {
	case "", "true", "false":
	default:
		return Config{}, fmt.Errorf("configuration: CONSOLE %q: want true or false", c.Console)
	}
	if !slices.Contains(console.Formats, c.ConsoleFormat) {
		return Config{}, fmt.Errorf("configuration: CONSOLE_FORMAT %q: want json or text", c.ConsoleFormat)
	}
	switch c.WebhookMode {
	case "binary", "structured":
	default:
		return Config{}, fmt.Errorf("configuration: WEBHOOK_MODE %q: want binary or structured", c.WebhookMode)
	}
	if c.SinkConcurrency < 1 || c.SinkConcurrency > 10000 {
		return Config{}, fmt.Errorf("configuration: SINK_CONCURRENCY %d must be between 1 and 10000", c.SinkConcurrency)
	}
	if c.SlackDigestWindow <= 0 {
		return Config{}, fmt.Errorf("configuration: SLACK_DIGEST_WINDOW must be positive")
	}
	if c.MaxAge < 0 {
		return Config{}, fmt.Errorf("configuration: MAX_AGE must not be negative")
	}
	if c.ShutdownGrace <= 0 {
		return Config{}, fmt.Errorf("configuration: SHUTDOWN_GRACE must be positive")
	}
	if len(c.RetrySchedule) == 0 {
		return Config{}, fmt.Errorf("configuration: RETRY_SCHEDULE is empty; want waits like 5s,5m,30m,2h,5h,10h,10h")
	}
	for i, d := range c.RetrySchedule {
		if d <= 0 {
			return Config{}, fmt.Errorf("configuration: RETRY_SCHEDULE wait %d is %s; every wait must be positive", i+1, d)
		}
	}
	if c.SinkWindow < c.SinkConcurrency {
		return Config{}, fmt.Errorf("configuration: SINK_WINDOW %d is below SINK_CONCURRENCY %d", c.SinkWindow, c.SinkConcurrency)
	}
	if c.ProbeEvery <= 0 {
		return Config{}, fmt.Errorf("configuration: PROBE_EVERY must be positive")
	}
	if c.MaxAttempts < 0 {
		return Config{}, fmt.Errorf("configuration: MAX_ATTEMPTS %d must be 0 (the whole RETRY_SCHEDULE) or more", c.MaxAttempts)
	}
	if c.SinkStart != "new" && c.SinkStart != "all" {
		if _, err := time.Parse(time.RFC3339, c.SinkStart); err != nil {
			return Config{}, fmt.Errorf("configuration: SINK_START %q: want new, all or an RFC 3339 time", c.SinkStart)
		}
	}
	return c, nil
}

// typeList says what a types filter holds, for an error message.
var typeList = "event types (" + strings.Join(events.Types, ", ") + ")"

// filterList reads the sink filter variable name from l: a comma-separated
// list of what (said in the error for an empty entry), each entry checked
// by check. It runs
// before anything reaches NATS, so that a filter that would match nothing
// stops the notifier instead of rewriting a sink's consumer to lose every
// event.
//
// Spaces around an entry are dropped: "user.registered, user.retired"
// means what it says, and neither an event type nor a source name can hold
// a space, so nothing else could be meant. A value that is empty or all
// spaces is no filter (nil: every event), as if unset. An empty entry (a
// trailing or doubled comma) is an error, as is an entry check refuses; an
// entry given twice counts once.
func filterList(l envconfig.Lookuper, name, what string, check func(string) error) ([]string, error) {
	raw, _ := l.Lookup(name)
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	var out []string
	for i, e := range strings.Split(raw, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("configuration: %s %q: entry %d is empty (a stray comma?); want %s separated by commas", name, raw, i+1, what)
		}
		if err := check(e); err != nil {
			return nil, fmt.Errorf("configuration: %s %q: %w", name, raw, err)
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
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

// checkWebhooks refuses, each under its own name, a webhook timeout that is
// not positive and a shared secret that is not in whsec_ form. The URLs,
// the WEBHOOK_<n>_ variables beyond them (checkOverrides) and secrets from
// files are checked when the sinks are built.
func (c Config) checkWebhooks() error {
	if c.WebhookTimeout <= 0 {
		return fmt.Errorf("configuration: WEBHOOK_TIMEOUT %s must be positive", c.WebhookTimeout)
	}
	return checkSecrets("WEBHOOK_SECRET", c.WebhookSecret)
}

// checkSecrets refuses a value of the secret variable name that holds a
// secret not in whsec_ form (several, space-separated, during a rotation).
func checkSecrets(name, value string) error {
	for i, s := range strings.Fields(value) {
		if err := webhook.CheckSecret(s); err != nil {
			return fmt.Errorf("configuration: %s (secret %d): %w; want whsec_ followed by base64, as `openssl rand -base64 32` prints it", name, i+1, err)
		}
	}
	return nil
}
