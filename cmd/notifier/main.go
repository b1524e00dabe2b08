// Command notifier delivers rollcall events from NATS JetStream to the
// console, webhooks and Slack, and answers audit questions from the trail.
// Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
)

const usage = `usage:
  notifier [run]                  deliver events to the sinks configured in the environment
                                  (CONSOLE, WEBHOOK_URL, SLACK_WEBHOOK_URL)
  notifier replay [flags]         read the audit trail:
        --since T --until T       RFC 3339 times
        --type T1,T2              event types
        --source S --user ID      one source, one user's whole history
        --to console|webhook|slack
        --as-of T --source S      print the directory of S as it was at T
  notifier deadletter list [--sink NAME]
  notifier deadletter redrive [--sink NAME] [--id EVENT_ID]
See README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := envconfig.OsLookuper()
	cmd, args := "run", os.Args[1:]
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = notifierapp.Run(ctx, env, os.Stdout, os.Stderr)
	case "replay":
		err = notifierapp.Replay(ctx, args, env, os.Stdout, os.Stderr)
	case "deadletter":
		err = notifierapp.DeadLetter(ctx, args, env, os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("%w: unknown command %q", notifierapp.ErrUsage, cmd)
	}
	if errors.Is(err, notifierapp.ErrUsage) {
		fmt.Fprintf(os.Stderr, "notifier: %v\n\n%s", err, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(1)
	}
}
