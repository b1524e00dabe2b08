// Command notifier delivers rollcall events from NATS JetStream to the
// console, webhooks and Slack. Configuration comes from the environment; see
// README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
)

const usage = `usage: notifier [run]

Delivers rollcall events to the sinks configured in the environment
(CONSOLE, WEBHOOK_URL, SLACK_WEBHOOK_URL). See README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] != "run" {
		fmt.Fprintf(os.Stderr, "notifier: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err := notifierapp.Run(ctx, envconfig.OsLookuper(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(1)
	}
}
