package notifierapp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

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
	"github.com/rollcall/rollcall/internal/version"
	"github.com/rollcall/rollcall/pkg/events"
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
	build := version.Get()
	log.Info("rollcall notifier starting", build.LogAttrs()...)
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
	warnUnseenSources(ctx, js, cfg.Sources, log)
	reg := ops.NewRegistry()
	version.Register(reg, build)
	n := notifier.New(js, notifier.Config{MaxAttempts: cfg.MaxAttempts, MaxAge: cfg.MaxAge, Concurrency: cfg.SinkConcurrency,
		Schedule: cfg.RetrySchedule, Window: cfg.SinkWindow, ProbeEvery: cfg.ProbeEvery,
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

// sourcesLookTimeout bounds warnUnseenSources' look at the event stream.
const sourcesLookTimeout = 5 * time.Second

// warnUnseenSources warns about each SINK_SOURCES entry that has no events
// on the event stream while other sources do: a possible name that no
// poller source has (vpp-eu for vpp_eu) passes Load and then matches
// nothing. The notifier cannot see the poller's SOURCES, so it looks at the
// subjects on the stream (stream info with a subject filter, which its NATS
// user may read; it changes nothing). When it cannot tell (no stream yet,
// an empty stream, an error, no answer within sourcesLookTimeout) it says
// nothing. A source whose events have all aged out of the stream is warned
// about too; the warning says what it means, it does not stop the notifier.
func warnUnseenSources(ctx context.Context, js jetstream.JetStream, sources []string, log *slog.Logger) {
	if len(sources) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sourcesLookTimeout)
	defer cancel()
	cannotTell := func(err error) {
		log.Debug("cannot tell which sources have events; SINK_SOURCES not compared with them", "err", err)
	}
	stream, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		cannotTell(err)
		return
	}
	var unseen []string
	for _, s := range sources {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.SubjectPrefix+s+".>"))
		if err != nil {
			cannotTell(err)
			return
		}
		if len(info.State.Subjects) == 0 {
			unseen = append(unseen, s)
		}
	}
	if len(unseen) == 0 {
		return
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.SubjectPrefix+">"))
	if err != nil {
		cannotTell(err)
		return
	}
	set := map[string]bool{}
	for subj := range info.State.Subjects {
		src, _, _ := strings.Cut(strings.TrimPrefix(subj, events.SubjectPrefix), ".")
		set[src] = true
	}
	if len(set) == 0 {
		return // an empty stream: nothing to compare with
	}
	seen := slices.Sorted(maps.Keys(set))
	for _, s := range unseen {
		log.Warn("SINK_SOURCES names a source with no events on the stream: its events will be delivered only if a poller source has exactly that name",
			"source", s, "sources_with_events", seen)
	}
}

// cleartext refuses an http:// sink URL unless ALLOW_INSECURE_HTTP: the
// events carry people's names and e-mail addresses, and a Slack URL is a
// credential. The URL is never quoted (it may hold a token).
func cleartext(variable, u string, allow bool) error {
	if allow || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(u)), "http://") {
		return nil
	}
	return fmt.Errorf("configuration: %s is http://: the deliveries (and a Slack URL, which is a credential) would travel in clear text; "+
		"use an https:// URL (only for test receivers, set ALLOW_INSECURE_HTTP=true)", variable)
}

// checkOverrides refuses more webhooks than WEBHOOK_<n>_ variables are
// read for (a 33rd webhook would get every type and the shared secret,
// whatever WEBHOOK_33_* said), and an override of a webhook the URLs do not
// have, from WEBHOOK_URL or WEBHOOK_URL_FILE alike.
func checkOverrides(urls []string, overrides map[int]WebhookOverride) error {
	if len(urls) > maxWebhooks {
		return fmt.Errorf("configuration: %d webhook URLs; at most %d are supported (run another notifier for more)", len(urls), maxWebhooks)
	}
	for n, o := range overrides {
		// Webhook n is the nth entry of the list; a blank entry is none.
		if n <= len(urls) && strings.TrimSpace(urls[n-1]) != "" {
			continue
		}
		v := "TYPES"
		switch {
		case o.Secret != "":
			v = "SECRET"
		case o.SecretFile != "":
			v = "SECRET_FILE"
		}
		return fmt.Errorf("configuration: WEBHOOK_%d_%s is set but webhook URL #%d is missing or blank: it would apply to none; remove it or add the URL", n, v, n)
	}
	return nil
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
	if err := checkOverrides(urls, cfg.WebhookOverrides); err != nil {
		return nil, err
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
		if err := cleartext(fmt.Sprintf("WEBHOOK_URL #%d", i+1), u, cfg.AllowInsecureHTTP); err != nil {
			return nil, err
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
		if err := cleartext("SLACK_WEBHOOK_URL", slackURL, cfg.AllowInsecureHTTP); err != nil {
			return nil, err
		}
		s, err := slack.New(slack.Config{WebhookURL: slackURL, DigestThreshold: cfg.SlackDigestThreshold, DigestWindow: cfg.SlackDigestWindow})
		if err != nil {
			return nil, fmt.Errorf("configuration: SLACK_WEBHOOK_URL: %w", err)
		}
		routes = append(routes, route(s, cfg.SlackTypes))
	}
	if cfg.Console == "true" || cfg.Console == "" && len(routes) == 0 {
		routes = append(routes, route(console.New(console.Config{Out: stdout, Format: cfg.ConsoleFormat}), nil))
	}
	if len(routes) == 0 {
		return nil, fmt.Errorf("configuration: no sink: set WEBHOOK_URL, SLACK_WEBHOOK_URL or CONSOLE=true")
	}
	return routes, nil
}
