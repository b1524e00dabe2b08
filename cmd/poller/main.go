// Command poller snapshots the configured user directories, diffs them
// against the last known state and publishes what changed as CloudEvents on
// NATS JetStream. Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/envx"
	"github.com/rollcall/rollcall/internal/version"
)

const usage = `usage: poller [--version | --help]

Polls the user directories configured in the environment (VPP_STOKEN,
VEEAM_BASE_URL, SOURCES, NATS_URL, …) and publishes what changed on NATS
JetStream. It takes no arguments: its settings, with their defaults, are
below and in README.md under "Configuration".
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr))
}

// run is the command with its arguments; it returns the exit code. An
// argument it does not know stops it before anything starts.
func run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "--version", "-version", "version":
			fmt.Fprintln(stdout, version.Get().String("poller"))
			return 0
		case "--help", "-help", "-h", "help":
			fmt.Fprint(stdout, usage+"\n"+envx.Usage(&pollerapp.Config{})+
				"A source named in SOURCES reads the same variables under its own prefix (<NAME>_STOKEN, …).\n")
			return 0
		}
		fmt.Fprintf(stderr, "poller: unknown argument %q\n\n%s", args[0], usage)
		return 2
	}
	if err := pollerapp.Run(ctx, env, stderr); err != nil {
		fmt.Fprintln(stderr, "poller:", err)
		return 1
	}
	return 0
}
