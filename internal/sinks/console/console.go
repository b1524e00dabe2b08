// Package console is the sink that prints each event as one line: of
// CloudEvents structured-mode JSON (Format "json", the default), so that
// the output can be piped into jq, a file or any CloudEvents tooling, or of
// text a person reads (Format "text", see Line).
package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/rollcall/rollcall/pkg/events"
)

// Sink writes events as JSON lines.
type Sink struct {
	name string
	// mu keeps each line whole: consumers of several sinks may share one
	// writer, and a line split by another goroutine's write is unreadable.
	mu   sync.Mutex
	out  io.Writer
	text bool
}

// Name is the sink name.
func (s *Sink) Name() string { return s.name }

// Send writes e as one line. A cancelled context writes nothing, so that an
// event the notifier will redeliver after a shutdown is not printed twice.
func (s *Sink) Send(ctx context.Context, e events.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var b []byte
	if s.text {
		b = append([]byte(Line(e)), '\n')
	} else {
		// The structured form never contains a newline: encoding/json
		// escapes control characters inside strings.
		j, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("console: encode event %s: %w", e.ID(), err)
		}
		b = append(j, '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.out.Write(b); err != nil {
		return fmt.Errorf("console: write event %s: %w", e.ID(), err)
	}
	return nil
}
