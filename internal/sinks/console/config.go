package console

import (
	"io"
	"os"
)

// DefaultName is the sink name, and durable consumer name, of the console sink.
const DefaultName = "console"

// Config configures the console sink.
type Config struct {
	// Name is the sink name; default "console".
	Name string
	// Out receives one line per event; default os.Stdout.
	Out io.Writer
	// Format is "json" (CloudEvents structured JSON, the default) or
	// "text" (one line a person reads: time, source, user, what changed).
	Format string
}

// Formats are the values Config.Format takes.
var Formats = []string{"json", "text"}

// New returns a console sink writing to cfg.Out.
func New(cfg Config) *Sink {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	return &Sink{name: cfg.Name, out: cfg.Out, text: cfg.Format == "text"}
}
