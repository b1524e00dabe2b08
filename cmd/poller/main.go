// Command poller snapshots the configured user directories, diffs them
// against the last known state and publishes what changed as CloudEvents on
// NATS JetStream. Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := pollerapp.Run(ctx, envconfig.OsLookuper(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "poller:", err)
		os.Exit(1)
	}
}
