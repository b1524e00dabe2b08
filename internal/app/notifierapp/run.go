package notifierapp

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/ops"
	"github.com/rollcall/rollcall/internal/secret"
	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
)

// Run runs the notifier until ctx ends. Console events go to stdout, logs
// to stderr.
func Run(ctx context.Context, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	cfg, err := Load(ctx, env)
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	routes, err := buildRoutes(cfg, stdout)
	if err != nil {
		return err
	}
	cc, err := cfg.natsClient(cfg.NATSURL, "rollcall-notifier")
	if err != nil {
		return err
	}
	nc, err := natsutil.Connect(cc, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	reg := ops.NewRegistry()
	n := notifier.New(js, notifier.Config{MaxAttempts: cfg.MaxAttempts, MaxAge: cfg.MaxAge, Concurrency: cfg.SinkConcurrency,
		ShutdownGrace: cfg.ShutdownGrace, Replicas: cfg.NATSReplicas, Metrics: metrics.NewNotifier(reg), Logger: log}, routes...)

	handler := ops.Handler(reg, map[string]ops.Check{
		"nats": ops.NATSConnected(nc),
		"stream": func(ctx context.Context) error {
			_, err := js.Stream(ctx, bus.EventsStream)
			return err
		},
		"deadletter stream": func(ctx context.Context) error {
			_, err := js.Stream(ctx, bus.DeadLetterStream)
			return err
		},
	})
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.Sink.Name()
	}
	log.Info("notifier started", "sinks", names, "nats", nc.ConnectedUrlRedacted())
	err = ops.RunService(ctx, cfg.HTTPAddr, handler, log, n.Run)
	log.Info("notifier stopped")
	return err
}

func buildRoutes(cfg Config, stdout io.Writer) ([]notifier.Route, error) {
	var routes []notifier.Route
	route := func(s notifier.Sink, types []string) notifier.Route {
		return notifier.Route{Sink: s, Types: types, Sources: cfg.Sources, Start: cfg.SinkStart}
	}
	urls := cfg.WebhookURL
	if cfg.WebhookURLFile != "" {
		if len(urls) > 0 {
			return nil, fmt.Errorf("configuration: WEBHOOK_URL and WEBHOOK_URL_FILE are both set; set one")
		}
		s, err := secret.Resolve("WEBHOOK_URL", "", cfg.WebhookURLFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		urls = strings.Split(s, ",")
	}
	whSecret, err := secret.Resolve("WEBHOOK_SECRET", cfg.WebhookSecret, cfg.WebhookSecretFile)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	var secrets []string
	if whSecret != "" {
		secrets = strings.Fields(whSecret)
	}
	for i, u := range urls {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		name := "webhook"
		if i > 0 {
			name = "webhook-" + strconv.Itoa(i+1)
		}
		own, types := secrets, cfg.WebhookTypes
		if o, ok := cfg.WebhookOverrides[i+1]; ok {
			v := fmt.Sprintf("WEBHOOK_%d_SECRET", i+1)
			if s, err := secret.Resolve(v, o.Secret, o.SecretFile); err != nil {
				return nil, fmt.Errorf("configuration: %w", err)
			} else if s != "" {
				own = strings.Fields(s)
			}
			if len(o.Types) > 0 {
				types = o.Types
			}
		}
		s, err := webhook.New(webhook.Config{Name: name, URL: u, Secrets: own, Mode: cfg.WebhookMode, Timeout: cfg.WebhookTimeout})
		if err != nil {
			return nil, fmt.Errorf("configuration: WEBHOOK_URL #%d: %w", i+1, err)
		}
		routes = append(routes, route(s, types))
	}
	slackURL, err := secret.Resolve("SLACK_WEBHOOK_URL", cfg.SlackWebhookURL, cfg.SlackWebhookURLFile)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if slackURL != "" {
		s, err := slack.New(slack.Config{WebhookURL: slackURL, DigestThreshold: cfg.SlackDigestThreshold, DigestWindow: cfg.SlackDigestWindow})
		if err != nil {
			return nil, fmt.Errorf("configuration: SLACK_WEBHOOK_URL: %w", err)
		}
		routes = append(routes, route(s, cfg.SlackTypes))
	}
	if cfg.Console == "true" || cfg.Console == "" && len(routes) == 0 {
		routes = append(routes, route(console.New(console.Config{Out: stdout}), nil))
	}
	if len(routes) == 0 {
		return nil, fmt.Errorf("configuration: no sink: set WEBHOOK_URL, SLACK_WEBHOOK_URL or CONSOLE=true")
	}
	return routes, nil
}
