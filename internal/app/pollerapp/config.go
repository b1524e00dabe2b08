// Package pollerapp wires the poller service from its environment: NATS
// (embedded or remote), the configured sources, the poll loop and the
// operational HTTP endpoints. cmd/poller is a thin main around Run.
package pollerapp

import (
	"context"
	"fmt"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/envx"
)

// Config is the poller's environment (SPEC §3.4).
type Config struct {
	NATSURL      string `env:"NATS_URL"`
	NATSCreds    string `env:"NATS_CREDS"`
	NATSCAFile   string `env:"NATS_CA_FILE"`
	NATSCertFile string `env:"NATS_CERT_FILE"`
	NATSKeyFile  string `env:"NATS_KEY_FILE"`
	NATSReplicas int    `env:"NATS_REPLICAS, default=1"`

	DataDir        string `env:"DATA_DIR, default=./data"`
	EmbeddedListen string `env:"EMBEDDED_NATS_LISTEN, default=127.0.0.1:4222"`

	EventsMaxAge          time.Duration `env:"EVENTS_MAX_AGE, default=8760h"`
	EventsDuplicateWindow time.Duration `env:"EVENTS_DUPLICATE_WINDOW, default=24h"`
	EmitInitial           bool          `env:"EMIT_INITIAL, default=false"`

	HTTPAddr  string `env:"HTTP_ADDR, default=127.0.0.1:9090"`
	LogFormat string `env:"LOG_FORMAT, default=text"`
	LogLevel  string `env:"LOG_LEVEL, default=info"`

	VPP   VPPConfig   `env:", prefix=VPP_"`
	Veeam VeeamConfig `env:", prefix=VEEAM_"`
}

// VPPConfig enables and tunes the vpp source.
type VPPConfig struct {
	SToken           string        `env:"STOKEN"`
	STokenFile       string        `env:"STOKEN_FILE"`
	BaseURL          string        `env:"BASE_URL, default=https://vpp.itunes.apple.com/mdm"`
	Interval         time.Duration `env:"INTERVAL, default=15m"`
	FullSyncInterval time.Duration `env:"FULL_SYNC_INTERVAL, default=24h"`
}

// VeeamConfig enables and tunes the veeam source.
type VeeamConfig struct {
	BaseURL      string        `env:"BASE_URL"`
	Token        string        `env:"TOKEN"`
	TokenFile    string        `env:"TOKEN_FILE"`
	Username     string        `env:"USERNAME"`
	Password     string        `env:"PASSWORD"`
	PasswordFile string        `env:"PASSWORD_FILE"`
	Interval     time.Duration `env:"INTERVAL, default=5m"`
	PageSize     int           `env:"PAGE_SIZE, default=500"`
	CAFile       string        `env:"CA_FILE"`
}

// Load reads the configuration through l and checks what it can without I/O.
func Load(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	var c Config
	if err := envx.Process(ctx, &c, l); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	switch {
	case c.VPP.Interval <= 0:
		return Config{}, fmt.Errorf("configuration: VPP_INTERVAL must be positive")
	case c.Veeam.Interval <= 0:
		return Config{}, fmt.Errorf("configuration: VEEAM_INTERVAL must be positive")
	case c.Veeam.PageSize < 1 || c.Veeam.PageSize > 500:
		return Config{}, fmt.Errorf("configuration: VEEAM_PAGE_SIZE %d must be between 1 and 500", c.Veeam.PageSize)
	case c.NATSReplicas < 1 || c.NATSReplicas > 5:
		return Config{}, fmt.Errorf("configuration: NATS_REPLICAS %d must be between 1 and 5", c.NATSReplicas)
	}
	return c, nil
}
