package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
)

// Sinks lists, sorted, the sinks that have dead letters on
// ROLLCALL_DEADLETTER (the subjects present on the stream; no message is
// read). No stream: none.
func Sinks(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	s, err := js.Stream(ctx, bus.DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters: look up stream %s: %w", bus.DeadLetterStream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(bus.DeadLetterPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("dead letters: stream %s: %w", bus.DeadLetterStream, err)
	}
	var out []string
	for subj, n := range info.State.Subjects {
		if name := strings.TrimPrefix(subj, bus.DeadLetterPrefix); n > 0 && name != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// JSONEntry is one dead letter as WriteJSON prints it.
type JSONEntry struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Sink      string    `json:"sink"`
	Reason    string    `json:"reason"`
	Status    int       `json:"status,omitempty"`
	Attempts  int       `json:"attempts"`
	StreamSeq uint64    `json:"streamSeq,omitempty"`
	EventID   string    `json:"eventId,omitempty"`
	EventType string    `json:"eventType,omitempty"`
	// Event is the CloudEvent in structured JSON; absent when the dead
	// letter holds none (Undecodable).
	Event json.RawMessage `json:"event,omitempty"`
	// Undecodable dead letters carry what they hold instead: the original
	// subject and body (a string when it is UTF-8, else base64 in
	// RawBase64), and whether it was cut.
	Undecodable bool   `json:"undecodable,omitempty"`
	Subject     string `json:"subject,omitempty"`
	Raw         string `json:"raw,omitempty"`
	RawBase64   []byte `json:"rawBase64,omitempty"`
	Cut         bool   `json:"cut,omitempty"`
	Size        int    `json:"size,omitempty"`
}

// WriteJSON writes entries as JSON lines, one object per dead letter (see
// JSONEntry), for scripts: `notifier deadletter list --json`.
func WriteJSON(w io.Writer, entries []Entry) error {
	enc := json.NewEncoder(w)
	for _, en := range entries {
		j := JSONEntry{Seq: en.Seq, Time: en.At.UTC(), Sink: en.Sink, Reason: en.Reason, Status: en.Status,
			Attempts: en.Attempts, StreamSeq: en.StreamSeq, EventID: en.EventID(), Undecodable: en.Undecodable,
			Cut: en.Cut, Size: en.Size}
		if en.Undecodable {
			j.Subject = en.Subject
			if utf8.Valid(en.Raw) {
				j.Raw = string(en.Raw)
			} else {
				j.RawBase64 = en.Raw
			}
		} else {
			b, err := json.Marshal(en.Event)
			if err != nil {
				return fmt.Errorf("dead letter %d: encode event: %w", en.Seq, err)
			}
			j.Event, j.EventType = b, en.Event.Type()
		}
		if err := enc.Encode(j); err != nil {
			return fmt.Errorf("dead letter %d: %w", en.Seq, err)
		}
	}
	return nil
}
