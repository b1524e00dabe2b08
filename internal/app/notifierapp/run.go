package notifierapp

import (
	"context"
	"errors"
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
	// A taken HTTP_ADDR is the first and only thing said, before NATS.
	ln, err := ops.Listen(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if ln != nil {
		defer ln.Close()
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
	logSinks(log, routes)
	log.Info("notifier started", "sinks", sinkNames(routes), "nats", nc.ConnectedUrlRedacted())
	err = ops.RunListener(ctx, ln, handler, log, n.Run)
	err = endpointHint(err)
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
		r := notifier.Route{Sink: s, Types: types, Sources: cfg.Sources, Start: cfg.SinkStart}
		if e, ok := s.(interface{ Endpoint() (host, id string) }); ok {
			r.Endpoint.Host, r.Endpoint.ID = e.Endpoint()
			r.MoveEndpoint = slices.Contains(cfg.AllowEndpointChange, s.Name())
		}
		return r
	}
	specs, err := webhookSpecs(cfg)
	if err != nil {
		return nil, err
	}
	for _, w := range specs {
		if err := cleartext(w.urlVar, w.url, cfg.AllowInsecureHTTP); err != nil {
			return nil, err
		}
		s, err := webhook.New(webhook.Config{Name: w.name, URL: w.url, Secrets: w.secrets, Mode: cfg.WebhookMode, Timeout: cfg.WebhookTimeout})
		if err != nil {
			return nil, fmt.Errorf("configuration: %s: %w", w.urlVar, err)
		}
		r := route(s, w.types)
		if w.named {
			r.Predecessors = positionalNames
		}
		routes = append(routes, r)
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
		return nil, fmt.Errorf("configuration: no sink: set WEBHOOK_URL (or WEBHOOKS), SLACK_WEBHOOK_URL or CONSOLE=true")
	}
	for _, name := range cfg.AllowEndpointChange {
		if !slices.ContainsFunc(routes, func(r notifier.Route) bool { return r.Sink.Name() == name }) {
			return nil, fmt.Errorf("configuration: ALLOW_ENDPOINT_CHANGE names %q, which is not a configured sink (sinks: %s)", name, strings.Join(sinkNames(routes), ", "))
		}
	}
	return routes, nil
}

// sinkNames are the routes' sink names, in order.
func sinkNames(routes []notifier.Route) []string {
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.Sink.Name()
	}
	return names
}

// logSinks says at start where each sink delivers: its name with its
// endpoint's host, never the path or query (which may hold a token), and
// warns about a webhook whose deliveries are unsigned.
func logSinks(log *slog.Logger, routes []notifier.Route) {
	for _, r := range routes {
		attrs := []any{"sink", r.Sink.Name()}
		if r.Endpoint.Host != "" {
			attrs = append(attrs, "endpoint", r.Endpoint.Host)
		}
		if len(r.Types) > 0 {
			attrs = append(attrs, "types", r.Types)
		}
		if len(r.Sources) > 0 {
			attrs = append(attrs, "sources", r.Sources)
		}
		if r.MoveEndpoint {
			attrs = append(attrs, "endpoint_change_allowed", true)
		}
		log.Info("sink configured", attrs...)
		if w, ok := r.Sink.(*webhook.Sink); ok && !w.Signed() {
			log.Warn("webhook deliveries are unsigned: a receiver cannot tell them from forged requests; set WEBHOOK_SECRET (or the webhook's own _SECRET) to a whsec_ secret (README.md, Webhook signatures)",
				"sink", r.Sink.Name(), "endpoint", r.Endpoint.Host)
		}
	}
}

// endpointHint adds to a refusal to move sinks' consumers what the operator
// can do about it, naming every sink refused: a webhook of WEBHOOK_URL may
// have moved in the list; any sink's URL may really have changed.
func endpointHint(err error) error {
	var names []string
	positional := false
	var walk func(error)
	walk = func(e error) {
		var ec *notifier.EndpointChangedError
		if errors.As(e, &ec) && !slices.Contains(names, ec.Sink) {
			names = append(names, ec.Sink)
			positional = positional || reservedSink(ec.Sink) && ec.Sink != "slack" && ec.Sink != "console"
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	if len(names) == 0 {
		return err
	}
	hint := "\nnothing was changed. "
	if positional {
		hint += "If WEBHOOK_URL was reordered or an entry removed, restore it, or name each webhook with WEBHOOKS so that its place does not matter; "
	}
	return fmt.Errorf("%w%sif the URL really changed, start once with ALLOW_ENDPOINT_CHANGE=%s", err, hint, strings.Join(names, ","))
}

// sinkKind is what a sink is, whatever its name: console, webhook or
// slack (a named webhook "crm" is a webhook).
func sinkKind(s notifier.Sink) string {
	switch s.(type) {
	case *webhook.Sink:
		return "webhook"
	case *slack.Sink:
		return "slack"
	case *console.Sink:
		return "console"
	}
	return s.Name()
}

// positionalNames are the sinks of WEBHOOK_URL's places: the consumers a
// named webhook may take over (notifier.Route.Predecessors).
var positionalNames = func() []string {
	out := []string{"webhook"}
	for n := 2; n <= maxWebhooks; n++ {
		out = append(out, "webhook-"+strconv.Itoa(n))
	}
	return out
}()
