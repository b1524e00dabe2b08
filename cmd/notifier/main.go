// Command notifier delivers rollcall events from NATS JetStream to the
// console, webhooks and Slack, and answers audit questions from the trail.
// Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/cli"
	"github.com/rollcall/rollcall/internal/envx"
	"github.com/rollcall/rollcall/internal/version"
)

const usage = `usage:
  notifier [run]                  deliver events to the sinks configured in the environment
                                  (CONSOLE, WEBHOOK_URL, SLACK_WEBHOOK_URL)
  notifier replay [flags]         read the audit trail:
        --since T --until T       times: RFC 3339, a date (2026-12-04 = midnight UTC),
                                  now, or a duration ago (1h, 1d, 2w, 1d12h)
        --type T1,T2              event types
        --source S --user U       one source; one user's whole history (U: the source's
                                  user id, an e-mail address or a user name)
        --to console|webhook|slack
        --format json|text        console output (default json)
        --as-of T --source S      print the directory of S as it was at T (not in the future;
                                  --format text: a table)
  notifier deadletter list [--sink NAME] [--id EVENT_ID] [--json]
  notifier deadletter redrive [--sink NAME] [--id EVENT_ID]
  notifier web                    serve the audit console on WEB_ADDR (default 127.0.0.1:9092;
                                  docs/CONSOLE.md): sources, sinks, search, timelines,
                                  the directory as of a time, dead letters
  notifier version                version, commit and Go version
See README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr))
}

// run is the command with its arguments; it returns the exit code.
func run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		if len(args) > 0 && cli.IsHelp(args[0]) {
			return run(ctx, []string{"help"}, env, stdout, stderr)
		}
		if len(args) > 0 {
			err = &notifierapp.UsageError{Err: fmt.Errorf("unexpected argument %q", args[0]), Usage: usage}
			break
		}
		err = notifierapp.Run(ctx, env, stdout, stderr)
	case "replay":
		err = notifierapp.Replay(ctx, args, env, stdout, stderr)
	case "deadletter":
		err = notifierapp.DeadLetter(ctx, args, env, stdout, stderr)
	case "web":
		err = notifierapp.Web(ctx, args, env, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage+"\n"+envx.Usage(&notifierapp.Config{})+
			"Named webhooks (WEBHOOKS=crm,hr): WEBHOOK_<NAME>_URL or _URL_FILE, WEBHOOK_<NAME>_SECRET or _SECRET_FILE, WEBHOOK_<NAME>_TYPES.\n"+
			"Per webhook of WEBHOOK_URL: WEBHOOK_<n>_SECRET, WEBHOOK_<n>_SECRET_FILE, WEBHOOK_<n>_TYPES (n = its place in the list).\n"+
			"Durations take Go's units plus d (24h) and w (7d): 90s, 15m, 1d12h, 2w.\n")
		return 0
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version.Get().String("notifier"))
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", notifierapp.ErrUsage, cmd)
	}
	var ue *notifierapp.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "notifier: %v\n\n%s", err, ue.Usage)
		return 2
	}
	if errors.Is(err, notifierapp.ErrUsage) {
		fmt.Fprintf(stderr, "notifier: %v\n\n%s", err, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "notifier:", err)
		return 1
	}
	return 0
}
