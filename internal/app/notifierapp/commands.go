package notifierapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/cli"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/logging"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/pkg/events"
)

// ErrUsage marks a command line that could not be parsed; the message says
// what was wrong.
var ErrUsage = cli.ErrUsage

// UsageError is a subcommand's command line that could not be parsed, with
// that subcommand's usage (cli.UsageError).
type UsageError = cli.UsageError

// usageMore ends each subcommand's usage.
const usageMore = "The NATS connection and the sinks come from the environment (README.md, Configuration).\n"

// parseArgs parses a subcommand's flags (cli.Parse).
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	return cli.Parse(fs, args, stdout, usageMore)
}

// connect opens NATS for a one-shot command (no reconnect loop: a command
// that cannot reach NATS should say so and exit).
func connect(ctx context.Context, cfg Config) (*nats.Conn, jetstream.JetStream, error) {
	cc, err := cfg.natsClient(cfg.NATSURL, "rollcall-notifier-cli")
	if err != nil {
		return nil, nil, err
	}
	nc, err := natsutil.ConnectOnce(cc, 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats at NATS_URL: %w (is the poller or your NATS server running?)", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: --%s %q is not an RFC 3339 time (e.g. 2026-11-23T09:00:00Z)", ErrUsage, name, v)
	}
	return t, nil
}

// Replay runs `notifier replay`: the audit trail, filtered, to a sink; or
// with --as-of the directory as it was then.
func Replay(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notifier replay", flag.ContinueOnError)
	since := fs.String("since", "", "first event time (RFC 3339)")
	until := fs.String("until", "", "last event time (RFC 3339)")
	types := fs.String("type", "", "event types, comma-separated (e.g. user.retired,user.roleChanged)")
	source := fs.String("source", "", "source name")
	user := fs.String("user", "", "a user id of the source (its whole history)")
	to := fs.String("to", "console", "console, webhook or slack: where the events go (webhook and slack use the sink configuration)")
	asOf := fs.String("as-of", "", "with --source: print the directory as it was at this time (RFC 3339)")
	if help, err := parseArgs(fs, args, stdout); help || err != nil {
		return err
	}
	cfg, err := Load(ctx, env)
	if err != nil {
		return err
	}
	o := replay.Options{Source: *source, User: *user, Progress: stderr}
	if o.Since, err = parseTime("since", *since); err != nil {
		return err
	}
	if o.Until, err = parseTime("until", *until); err != nil {
		return err
	}
	if o.AsOf, err = parseTime("as-of", *asOf); err != nil {
		return err
	}
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if _, err := events.Schema(t); err != nil {
			return fmt.Errorf("%w: --type %q is not one of %s", ErrUsage, t, strings.Join(events.Types, ", "))
		}
		o.Types = append(o.Types, t)
	}
	if !o.AsOf.IsZero() && o.Source == "" {
		return fmt.Errorf("%w: --as-of needs --source", ErrUsage)
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	nc, js, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	if !o.AsOf.IsZero() {
		users, err := replay.Directory(ctx, js, o.Source, o.AsOf)
		if err != nil {
			return err
		}
		if err := replay.WriteUsers(stdout, users); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%d users in %s as of %s\n", len(users), o.Source, o.AsOf.Format(time.RFC3339))
		return nil
	}
	out, err := replaySink(cfg, *to, stdout)
	if err != nil {
		return err
	}
	// A digesting sink (Slack) batches the Sends in flight together; one at
	// a time, a long replay would crawl at one digest window per event.
	for _, s := range out {
		if c, ok := s.(interface{ Concurrency() int }); ok {
			o.InFlight = max(o.InFlight, c.Concurrency())
		}
	}
	_, err = replay.Replay(ctx, js, o, out)
	return err
}

// replaySink picks the destination of a replay: the console, or every
// configured sink of the named kind.
func replaySink(cfg Config, to string, stdout io.Writer) (multi, error) {
	if to == "console" {
		return multi{console.New(console.Config{Out: stdout})}, nil
	}
	if to != "webhook" && to != "slack" {
		return nil, fmt.Errorf("%w: --to %q: want console, webhook or slack", ErrUsage, to)
	}
	cfg.Console = "false"
	routes, err := buildRoutes(cfg, stdout)
	if err != nil && to == "webhook" {
		return nil, fmt.Errorf("--to webhook needs WEBHOOK_URL: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("--to slack needs SLACK_WEBHOOK_URL: %w", err)
	}
	var picked multi
	for _, r := range routes {
		if strings.HasPrefix(r.Sink.Name(), to) {
			picked = append(picked, r.Sink)
		}
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("--to %s: no %s sink is configured (set %s)", to, to, map[string]string{"webhook": "WEBHOOK_URL", "slack": "SLACK_WEBHOOK_URL"}[to])
	}
	return picked, nil
}

// multi sends to several sinks, each must accept.
type multi []notifier.Sink

func (m multi) Send(ctx context.Context, e events.Event) error {
	for _, s := range m {
		if err := s.Send(ctx, e); err != nil {
			return fmt.Errorf("sink %s: %w", s.Name(), err)
		}
	}
	return nil
}

// DeadLetter runs `notifier deadletter list|redrive`.
func DeadLetter(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	const deadUsage = "usage: notifier deadletter list|redrive [--sink NAME] [--id EVENT_ID]\n\n" +
		"  list     print the dead letters (reason, sink, attempts, event)\n" +
		"  redrive  send them again to their sink; those delivered are removed\n"
	if len(args) > 0 && cli.IsHelp(args[0]) {
		_, err := fmt.Fprint(stdout, deadUsage)
		return err
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "redrive") {
		what := "a subcommand is missing"
		if len(args) > 0 {
			what = fmt.Sprintf("unknown subcommand %q", args[0])
		}
		return &UsageError{Err: errors.New(what), Usage: deadUsage}
	}
	cmd := args[0]
	fs := flag.NewFlagSet("notifier deadletter "+cmd, flag.ContinueOnError)
	sink := fs.String("sink", "", "only this sink's dead letters")
	id := fs.String("id", "", "only the dead letters of this event id")
	if help, err := parseArgs(fs, args[1:], stdout); help || err != nil {
		return err
	}
	cfg, err := Load(ctx, env)
	if err != nil {
		return err
	}
	if _, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	nc, js, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	if cmd == "list" {
		entries, err := deadletter.List(ctx, js, *sink)
		if err != nil {
			return err
		}
		if *id != "" {
			kept := entries[:0]
			for _, e := range entries {
				if e.EventID() == *id {
					kept = append(kept, e)
				}
			}
			entries = kept
		}
		deadletter.Print(stdout, entries)
		return nil
	}
	routes, err := buildRoutes(cfg, stdout)
	if err != nil {
		return err
	}
	senders := map[string]deadletter.Sender{}
	for _, r := range routes {
		senders[r.Sink.Name()] = r.Sink
	}
	_, err = deadletter.Redrive(ctx, js, senders, *sink, *id, stderr)
	if errors.Is(err, deadletter.ErrNoMatch) {
		return fmt.Errorf("no dead letter matches --id %s (see notifier deadletter list)", *id)
	}
	return err
}
