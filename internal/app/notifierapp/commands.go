package notifierapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
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
	"github.com/rollcall/rollcall/internal/when"
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

// replayMore ends the usage of `notifier replay`.
const replayMore = "Times (--since, --until, --as-of): " + when.Forms + ";\n" +
	"a date is midnight UTC at its start; d is 24h and w is 7d. --as-of may not be in the future.\n" +
	"--format applies to the console only (--to console): json is CloudEvents JSON lines, and with\n" +
	"--as-of the users as JSON lines; text is one line a person reads per event, and with --as-of a table.\n" +
	"--user takes a user id of the source, or an e-mail address or user name: every user that has or\n" +
	"had it is replayed (all of them when several share it, which stderr says).\n\n" + usageMore

// parseTime reads a replay time flag (when.Time); "" is no time.
func parseTime(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := when.Time(v, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: --%s %v", ErrUsage, name, err)
	}
	return t, nil
}

// Replay runs `notifier replay`: the audit trail, filtered, to a sink; or
// with --as-of the directory as it was then.
func Replay(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notifier replay", flag.ContinueOnError)
	since := fs.String("since", "", "first event time: RFC 3339, a date, now, or a duration ago (1h, 1d, 2w)")
	until := fs.String("until", "", "last event time, in the forms of --since")
	types := fs.String("type", "", "event types, comma-separated (e.g. user.retired,user.roleChanged)")
	source := fs.String("source", "", "source name")
	user := fs.String("user", "", "one user's whole history: a user id of the source, or an e-mail address or user name")
	to := fs.String("to", "console", "console, webhook or slack: where the events go (webhook and slack use the sink configuration)")
	format := fs.String("format", "json", "console output: json or text (see below)")
	asOf := fs.String("as-of", "", "with --source: print the directory as it was at this time (the forms of --since)")
	if help, err := cli.Parse(fs, args, stdout, replayMore); help || err != nil {
		return err
	}
	formatSet := false
	fs.Visit(func(f *flag.Flag) { formatSet = formatSet || f.Name == "format" })
	if !slices.Contains(console.Formats, *format) {
		return &UsageError{Err: fmt.Errorf("--format %q: want %s", *format, strings.Join(console.Formats, " or ")), Usage: cli.Usage(fs, replayMore)}
	}
	if formatSet && *to != "console" {
		return &UsageError{Err: fmt.Errorf("--format applies to the console only; --to %s sends what the %s sink sends", *to, *to), Usage: cli.Usage(fs, replayMore)}
	}
	cfg, err := Load(ctx, env)
	if err != nil {
		return err
	}
	now := time.Now()
	o := replay.Options{Source: *source, User: *user, Progress: stderr}
	if o.Since, err = parseTime("since", *since, now); err != nil {
		return err
	}
	if o.Until, err = parseTime("until", *until, now); err != nil {
		return err
	}
	if o.AsOf, err = parseTime("as-of", *asOf, now); err != nil {
		return err
	}
	if *asOf != "" && o.AsOf.IsZero() {
		// 0001-01-01T00:00:00Z is Go's zero time, which would read as
		// no --as-of at all and replay the whole trail.
		return fmt.Errorf("%w: --as-of %s: nothing is known before the source's first complete snapshot; pick a later time", ErrUsage, *asOf)
	}
	if err := when.NotFuture(o.AsOf, now); err != nil {
		return fmt.Errorf("%w: --as-of %s: %w; nothing is known about it (--as-of now is the directory as it is)", ErrUsage, *asOf, err)
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
	if o.Source != "" {
		if err := replay.CheckSource(ctx, js, o.Source); err != nil {
			return fmt.Errorf("--source: %w", err)
		}
	}
	if !o.AsOf.IsZero() {
		users, stats, err := replay.DirectoryWithStats(ctx, js, o.Source, o.AsOf)
		// Messages that are not rollcall events are skipped, as replay
		// skips them: the directory of every other event is printed and
		// the operator is told how many were left out and where.
		skipped := errors.Is(err, replay.ErrUndecodable)
		if err != nil && !skipped {
			return err
		}
		if *format == "text" {
			err = replay.WriteUserTable(stdout, users)
		} else {
			err = replay.WriteUsers(stdout, users)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%d users in %s as of %s\n", len(users), o.Source, o.AsOf.UTC().Format(time.RFC3339))
		if skipped {
			fmt.Fprintf(stderr, "replay: warning: skipped %d messages that are not rollcall events; the directory lacks what they held (%v)\n", stats.Undecodable, err)
		}
		return nil
	}
	if o.User != "" {
		refs, err := replay.ResolveUser(ctx, js, o.Source, o.User)
		if err != nil {
			return fmt.Errorf("--user: %w", err)
		}
		if len(refs) > 1 {
			names := make([]string, len(refs))
			for i, r := range refs {
				names[i] = console.Value(r.String())
			}
			fmt.Fprintf(stderr, "replay: --user %s matches %d users (%s); replaying all of them\n", console.Value(o.User), len(refs), strings.Join(names, ", "))
		}
		o.User, o.Users = "", refs
	}
	out, err := replaySink(cfg, *to, *format, stdout)
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
func replaySink(cfg Config, to, format string, stdout io.Writer) (multi, error) {
	if to == "console" {
		return multi{console.New(console.Config{Out: stdout, Format: format})}, nil
	}
	if to != "webhook" && to != "slack" {
		return nil, fmt.Errorf("%w: --to %q: want console, webhook or slack", ErrUsage, to)
	}
	cfg.Console = "false"
	routes, err := buildRoutes(cfg, stdout)
	if err != nil && to == "webhook" {
		return nil, fmt.Errorf("--to webhook needs WEBHOOK_URL or WEBHOOKS: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("--to slack needs SLACK_WEBHOOK_URL: %w", err)
	}
	var picked multi
	for _, r := range routes {
		if sinkKind(r.Sink) == to {
			picked = append(picked, r.Sink)
		}
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("--to %s: no %s sink is configured (set %s)", to, to, map[string]string{"webhook": "WEBHOOK_URL or WEBHOOKS", "slack": "SLACK_WEBHOOK_URL"}[to])
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
		"  list     print the dead letters (reason, sink, attempts, event);\n" +
		"           --json prints one JSON object per dead letter instead, for scripts\n" +
		"  redrive  send them again to their sink; those delivered are removed\n\n" +
		"--sink naming a sink that is not configured (redrive), or neither configured nor holding dead\n" +
		"letters (list), is an error naming the known sinks.\n"
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
	asJSON := new(bool)
	if cmd == "list" {
		fs.BoolVar(asJSON, "json", false, "one JSON object per dead letter (sink, reason, status, attempts, streamSeq, eventId, event), for scripts")
	}
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
		if *sink != "" {
			// The configuration of a reader (the replay user) may hold no
			// sink at all: then the stream's sinks are the known ones.
			var configured []string
			if routes, err := buildRoutes(cfg, io.Discard); err == nil {
				configured = configuredNames(routes)
			}
			if err := knownSink(ctx, js, *sink, configured); err != nil {
				return err
			}
		}
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
		if *asJSON {
			return deadletter.WriteJSON(stdout, entries)
		}
		deadletter.Print(stdout, entries)
		return nil
	}
	routes, err := buildRoutes(cfg, stdout)
	if err != nil {
		return err
	}
	_, err = redrive(ctx, js, routes, *sink, *id, stderr)
	if errors.Is(err, deadletter.ErrNoMatch) {
		return fmt.Errorf("no dead letter matches --id %s (see notifier deadletter list)", *id)
	}
	return err
}

// configuredNames are the routes' sink names.
func configuredNames(routes []notifier.Route) []string {
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.Sink.Name()
	}
	return names
}

// knownSink returns nil when sink has dead letters or is configured, and
// otherwise an error naming the sinks that are.
func knownSink(ctx context.Context, js jetstream.JetStream, sink string, configured []string) error {
	withLetters, err := deadletter.Sinks(ctx, js)
	if err != nil {
		return err
	}
	if slices.Contains(withLetters, sink) || slices.Contains(configured, sink) {
		return nil
	}
	have := "none"
	if len(withLetters) > 0 {
		have = strings.Join(withLetters, ", ")
	}
	conf := "none"
	if len(configured) > 0 {
		conf = strings.Join(configured, ", ")
	}
	return fmt.Errorf("--sink %s: unknown sink (sinks with dead letters: %s; configured sinks: %s)", console.Value(sink), have, conf)
}
