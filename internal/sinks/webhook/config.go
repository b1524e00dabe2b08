package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rollcall/rollcall/internal/sinks/internal/post"
)

// Defaults.
const (
	DefaultName    = "webhook"
	DefaultTimeout = 10 * time.Second
)

// Content modes (CloudEvents HTTP binding).
const (
	// ModeBinary puts attributes in Ce-* headers and the data in the body.
	ModeBinary = "binary"
	// ModeStructured sends the whole event as application/cloudevents+json.
	ModeStructured = "structured"
)

// Config configures one webhook endpoint.
type Config struct {
	// Name is the sink name; default "webhook". Several webhooks need
	// distinct names ("webhook-2") because each has its own consumer.
	Name string
	// URL is the endpoint. It often carries a token, so it never appears in
	// an error or a log line.
	URL string
	// Secrets sign each request per Standard Webhooks, each in whsec_<base64>
	// form. With several (during a rotation) every one signs, and the
	// receiver accepts any signature it can verify.
	Secrets []string
	// Mode is ModeBinary (default) or ModeStructured.
	Mode string
	// Timeout bounds one delivery attempt; default 10s.
	Timeout time.Duration
	// HTTPClient sends the requests; default post.NewClient's transport,
	// called directly (post.Direct): no redirect is followed.
	HTTPClient *http.Client
	// Now stamps webhook-timestamp; default time.Now.
	Now func() time.Time
}

// New validates cfg and returns the sink.
func New(cfg Config) (*Sink, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	redact, err := post.Endpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeBinary
	case ModeBinary, ModeStructured:
	default:
		return nil, fmt.Errorf("mode %q is not %q or %q", cfg.Mode, ModeBinary, ModeStructured)
	}
	keys := make([][]byte, 0, len(cfg.Secrets))
	for i, sec := range cfg.Secrets {
		k, err := decodeSecret(sec)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	target, err := post.ParseTarget(labelOf(cfg.Name), cfg.URL)
	if err != nil {
		return nil, err
	}
	s := &Sink{
		name:    cfg.Name,
		url:     cfg.URL,
		target:  target,
		lbl:     labelOf(cfg.Name),
		postOp:  labelOf(cfg.Name) + ": post",
		keys:    keys,
		mode:    cfg.Mode,
		timeout: cfg.Timeout,
		client:  post.DoerOf(cfg.HTTPClient),
		now:     cfg.Now,
	}
	s.redact = redact
	return s, nil
}

var errSecretForm = errors.New("not in whsec_<base64> form")
