package slack

import (
	"fmt"
	"net/http"
	"time"

	"github.com/rollcall/rollcall/internal/sinks/internal/post"
)

// Defaults.
const (
	DefaultName            = "slack"
	DefaultTimeout         = 10 * time.Second
	DefaultDigestThreshold = 10          // SLACK_DIGEST_THRESHOLD
	DefaultDigestWindow    = time.Minute // SLACK_DIGEST_WINDOW
	DefaultDigestUsers     = 10
)

// minConcurrency is the least Concurrency reports while digests are on.
const minConcurrency = 256

// Config configures the Slack sink.
type Config struct {
	// Name is the sink name; default "slack".
	Name string
	// WebhookURL is the incoming-webhook URL. Whoever has it can post to
	// the channel, so it never appears in an error or a log line.
	WebhookURL string
	// HTTPClient sends the requests; default post.NewClient's transport,
	// called directly (post.Direct): no redirect is followed.
	HTTPClient *http.Client
	// Timeout bounds one post to Slack (a message or a digest); default
	// 10s.
	Timeout time.Duration

	// DigestThreshold (SLACK_DIGEST_THRESHOLD) is how many events within
	// DigestWindow are still posted one message each; more switch the
	// sink to digests. 0 means the default, 10; a negative value turns
	// digests off (every event its own message).
	DigestThreshold int
	// DigestWindow (SLACK_DIGEST_WINDOW) is the sliding window events are
	// counted in, and how long a digest collects events before it is
	// posted; 0 means the default, 1m.
	DigestWindow time.Duration
	// DigestUsers is how many users a digest names; the others are
	// counted ("…and 32 more"). 0 means the default, 10.
	DigestUsers int
	// Now is the clock events are counted in the window by, and that
	// resolves a Retry-After date; default time.Now. A digest is posted by
	// a real timer DigestWindow after it opened (the package's tests
	// replace that timer too).
	Now func() time.Time
}

// New validates cfg and returns the sink.
func New(cfg Config) (*Sink, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	redact, err := post.Endpoint(cfg.WebhookURL)
	if err != nil {
		return nil, fmt.Errorf("webhook %w", err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DigestWindow < 0 {
		return nil, fmt.Errorf("digest window %v is negative", cfg.DigestWindow)
	}
	if cfg.DigestWindow == 0 {
		cfg.DigestWindow = DefaultDigestWindow
	}
	if cfg.DigestThreshold == 0 {
		cfg.DigestThreshold = DefaultDigestThreshold
	}
	if cfg.DigestUsers < 0 {
		return nil, fmt.Errorf("digest users %d is negative", cfg.DigestUsers)
	}
	if cfg.DigestUsers == 0 {
		cfg.DigestUsers = DefaultDigestUsers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sink{
		name:      cfg.Name,
		url:       cfg.WebhookURL,
		client:    post.DoerOf(cfg.HTTPClient),
		timeout:   cfg.Timeout,
		redact:    redact,
		threshold: cfg.DigestThreshold,
		window:    cfg.DigestWindow,
		users:     cfg.DigestUsers,
		now:       cfg.Now,
		afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}, nil
}
