package notifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	// body bytes (base64 in JSON). JSON strings cannot hold bytes that are
	// not UTF-8: when a header has such bytes, HeaderBytes holds every
	// header exactly, in NATS's header format (base64 in JSON).
	Subject     string              `json:"subject,omitempty"`
	Headers     map[string][]string `json:"headers,omitempty"`
	HeaderBytes []byte              `json:"header_bytes,omitempty"`
	Data        []byte              `json:"data,omitempty"`
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
	switch {
	case eventID == "":
		eventID = "undecodable"
	case len(eventID) > 64 || strings.ContainsAny(eventID, "\r\n"):
		// Not an id rollcall wrote: a hash keeps the header short.
		sum := sha256.Sum256([]byte(eventID))
		eventID = "h" + hex.EncodeToString(sum[:16])
	}
	// By hand, not fmt.Sprintf: one is made for every delivery.
	b := make([]byte, 0, len(eventID)+len(sink)+2+20+20)
	b = append(append(append(b, eventID...), '.'), sink...)
	b = strconv.AppendUint(append(b, '.'), streamSeq, 10)
	b = strconv.AppendInt(append(b, '.'), epoch, 10)
	return string(b)
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
	// The headers alone are too large (a huge subject or id): keep what
	// identifies the message, cut.
	dl.Data, dl.Headers, dl.HeaderBytes = nil, nil, nil
	if len(dl.EventID) > 256 {
		dl.EventID = strings.ToValidUTF8(dl.EventID[:256], "") + "…"
	}
	if len(dl.Subject) > 512 {
		dl.Subject = strings.ToValidUTF8(dl.Subject[:512], "") + "…"
	}
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
	if !validHeaders(dl.Headers) {
		dl.HeaderBytes = headerBytes(dl.Headers)
	}
	m := nats.NewMsg(bus.DeadLetterPrefix + sinkName)
	m.Header.Set(jetstream.MsgIDHeader, DeadLetterMsgID(eventID, sinkName, seq, h.epoch))
	limit := 1 << 20
	if nc := n.js.Conn(); nc != nil && nc.MaxPayload() > 0 {
		limit = int(nc.MaxPayload())
	}
	// The dead letter's own headers and framing count against the limit.
	limit -= 4<<10 + len(m.Header.Get(jetstream.MsgIDHeader))
	body, err := deadLetterBody(dl, limit)
	if err != nil {
		return err
	}
	m.Data = body
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

// validHeaders reports whether every header name and value is UTF-8, so
// that JSON holds them exactly.
func validHeaders(h map[string][]string) bool {
	for k, vs := range h {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// headerBytes is h in NATS's header format, names sorted.
func headerBytes(h map[string][]string) []byte {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("NATS/1.0\r\n")
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
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

// hasLetter is has(DeadLetterMsgID(eventID, sink, seq, epoch)), without
// making the id while the set is empty, as it is on a healthy sink.
func (d *deadSet) hasLetter(eventID, sink string, seq uint64, epoch int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ids) == 0 {
		return false
	}
	_, ok := d.ids[DeadLetterMsgID(eventID, sink, seq, epoch)]
	return ok
}

func (d *deadSet) add(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids[id] = struct{}{}
}

// load reads the message ids of every dead letter on the stream.
func (d *deadSet) load(ctx context.Context, js jetstream.JetStream) error {
	// A cluster that is still creating the stream or electing its leader
	// leaves requests unanswered for a while: each is sent again (found by
	// the compose test, where the notifier starts with the pollers).
	s, err := bus.Retry(ctx, "dead letters", func(ctx context.Context) (jetstream.Stream, error) {
		return js.Stream(ctx, bus.DeadLetterStream)
	})
	if err != nil {
		return err
	}
	for seq := uint64(1); ; {
		m, err := bus.Retry(ctx, fmt.Sprintf("dead letters: read from sequence %d", seq), func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			return s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(bus.DeadLetterPrefix+">"))
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
			d.add(id)
		}
		seq = m.Sequence + 1
	}
}
