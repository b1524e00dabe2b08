package slack

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/rollcall/rollcall/internal/sinks/internal/post"
)

// Defaults.
const (
	DefaultName    = "slack"
	DefaultTimeout = 10 * time.Second
)

// Config configures the Slack sink.
type Config struct {
	// Name is the sink name; default "slack".
	Name string
	// WebhookURL is the incoming-webhook URL. Whoever has it can post to
	// the channel, so it never appears in an error or a log line.
	WebhookURL string
	// HTTPClient sends the requests; default a client that does not follow
	// redirects.
	HTTPClient *http.Client
	// Timeout bounds one delivery attempt; default 10s.
	Timeout time.Duration
}

// New validates cfg and returns the sink.
func New(cfg Config) (*Sink, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.WebhookURL == "" {
		return nil, fmt.Errorf("slack %s: webhook url is empty", cfg.Name)
	}
	u, err := url.Parse(cfg.WebhookURL)
	if err != nil {
		// Not wrapped: url.Parse quotes the URL in its error.
		return nil, fmt.Errorf("slack %s: webhook url is not a valid URL", cfg.Name)
	}
	// http is allowed for local test servers and proxies; Slack itself only
	// serves https.
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("slack %s: webhook url must be an http(s) URL with a host", cfg.Name)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("slack %s: timeout %v is negative", cfg.Name, cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = post.NewClient()
	}
	return &Sink{
		name:    cfg.Name,
		url:     cfg.WebhookURL,
		client:  cfg.HTTPClient,
		timeout: cfg.Timeout,
		redact:  []string{cfg.WebhookURL, u.String(), u.EscapedPath(), u.Path, u.RawQuery},
	}, nil
}
