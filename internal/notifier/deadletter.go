package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
)

// DeadLetter is the body of a message on ROLLCALL_DEADLETTER: the message
// the sink could not take, exactly as it was on ROLLCALL_EVENTS (subject,
// headers and body bytes, so that one that is not even an event can be
// inspected, and a redrive sends what was stored), and why.
type DeadLetter struct {
	Sink     string    `json:"sink"`
	Reason   string    `json:"reason"`
	Status   int       `json:"status,omitempty"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
	// StreamSeq is the message's sequence on ROLLCALL_EVENTS.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// EventID is the event's id ("" when the message is not an event).
	EventID string `json:"event_id,omitempty"`
	// Subject, Headers and Data are the original message. Data is its
	// body bytes (base64 in JSON).
	Subject string              `json:"subject,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Data    []byte              `json:"data,omitempty"`
	// Cut says Data (and, if need be, Headers) were cut to fit the
	// server's maximum payload; Size is the original body's size.
	Cut  bool `json:"cut,omitempty"`
	Size int  `json:"size,omitempty"`
	// Event is how dead letters written before this format held the
	// event: a structured CloudEvent (or the raw body as a JSON string).
	Event json.RawMessage `json:"event,omitempty"`
}

// DeadLetterMsgID is the Nats-Msg-Id of a dead letter:
// <eventid>.<sink>.<stream sequence>.<consumer epoch>. It is the same for
// every publish of one dead-lettering (a publish retried after a lost
// reply, or the message delivered again after a crash or a lost Term before
// the message was terminated), so JetStream keeps one copy, and different
// whenever the event is dead-lettered anew: the same stream message
// delivered by a consumer deleted and created again (a replay to the sink),
// or the event stored again on the stream. An undecodable message has
// "undecodable" for its event id.
func DeadLetterMsgID(eventID, sink string, streamSeq uint64, epoch int64) string {
	if eventID == "" {
		eventID = "undecodable"
	}
	return fmt.Sprintf("%s.%s.%d.%d", eventID, sink, streamSeq, epoch)
}

// deadLetterBody encodes dl, cut to fit max bytes: the body first, then the
// headers, keeping what identifies the message.
func deadLetterBody(dl DeadLetter, limit int) ([]byte, error) {
	body, err := json.Marshal(dl)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	if len(body) <= limit {
		return body, nil
	}
	dl.Cut, dl.Size = true, len(dl.Data)
	// Base64 takes 4 bytes for 3: keep what fits beside the rest.
	over := len(body) - limit
	keep := max(0, len(dl.Data)-(over*3/4+64))
	dl.Data = dl.Data[:keep]
	if body, err = json.Marshal(dl); err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	if len(body) <= limit {
		return body, nil
	}
	// The headers alone are too large (a huge subject): keep the id.
	dl.Data, dl.Headers = nil, map[string][]string{"ce-id": {dl.EventID}}
	if body, err = json.Marshal(dl); err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	if len(body) > limit {
		return nil, fmt.Errorf("dead letter of %d bytes even cut, above the maximum payload %d", len(body), limit)
	}
	return body, nil
}

// publishDeadLetter stores the message on the dead-letter stream, with a
// message id (DeadLetterMsgID) that makes a repeated publish of the same
// dead-lettering a duplicate. A message too large to store whole is stored
// cut (DeadLetter.Cut), never not at all.
func (n *Notifier) publishDeadLetter(sinkName string, h held, eventID, reason string, status, attempts int) error {
	msg := h.msg
	var seq uint64
	if h.meta != nil {
		seq = h.meta.Sequence.Stream
	}
	dl := DeadLetter{Sink: sinkName, Reason: reason, Status: status, Attempts: attempts, At: time.Now().UTC(),
		StreamSeq: seq, EventID: eventID, Subject: msg.Subject(), Headers: msg.Headers(), Data: msg.Data()}
	limit := 1 << 20
	if nc := n.js.Conn(); nc != nil && nc.MaxPayload() > 0 {
		limit = int(nc.MaxPayload())
	}
	limit -= 4 << 10 // headers of the dead letter message itself, and framing
	body, err := deadLetterBody(dl, limit)
	if err != nil {
		return err
	}
	m := nats.NewMsg(bus.DeadLetterPrefix + sinkName)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, DeadLetterMsgID(eventID, sinkName, seq, h.epoch))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = n.js.PublishMsg(ctx, m)
	if errors.Is(err, nats.ErrMaxPayload) {
		// The server's limit is lower than the connection said: store
		// what identifies the message, at least.
		if body, err = deadLetterBody(dl, 16<<10); err == nil {
			m.Data = body
			_, err = n.js.PublishMsg(ctx, m)
		}
	}
	return err
}

// deadSet remembers the dead letters on the stream by message id, so that
// a message delivered again after it was dead-lettered (its Term lost) is
// terminated without another attempt. Run loads it from the stream; every
// dead-lettering adds to it.
type deadSet struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (d *deadSet) has(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.ids[id]
	return ok
}

func (d *deadSet) add(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids[id] = struct{}{}
}

// load reads the message ids of every dead letter on the stream.
func (d *deadSet) load(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(bus.DeadLetterPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dead letters: read from sequence %d: %w", seq, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
			d.add(id)
		}
		seq = m.Sequence + 1
	}
}
