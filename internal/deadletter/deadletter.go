// Package deadletter reads and redrives the events the notifier could not
// deliver: the messages on stream ROLLCALL_DEADLETTER, subject
// rollcall.deadletter.<sink>, each a notifier.DeadLetter holding the whole
// event (a structured CloudEvent) with the sink, reason, last status and
// attempts.
//
// List shows them; Redrive sends them again, each to its sink, and removes
// from the stream every one its sink took, so that List no longer shows it.
// One failing is left where it is, with its reason reported.
package deadletter

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/redact"
	"github.com/rollcall/rollcall/pkg/events"
)

// Entry is one dead letter.
type Entry struct {
	Seq      uint64 // sequence on ROLLCALL_DEADLETTER
	Sink     string
	Reason   string
	Status   int // the sink's last HTTP status, 0 when there was none
	Attempts int
	At       time.Time // when it was dead-lettered
	// Event is the event that was not delivered. It is the zero Event
	// when the notifier could not decode the message (Undecodable).
	Event events.Event
	// Undecodable is set when the dead letter holds no event (the message
	// on the event stream was not one, or the dead letter itself is
	// garbled); Raw has what it holds instead. Such an entry is listed but
	// never redriven.
	Undecodable bool
	Raw         []byte
	// StreamSeq is the event's sequence on ROLLCALL_EVENTS, 0 when the
	// dead letter was written by a notifier that did not record it.
	StreamSeq uint64
	// Subject and Headers are the original message's (Raw is its body),
	// for dead letters that kept it; Cut says the body was cut to fit,
	// Size its whole length. ID is the event id a dead letter recorded
	// beside an undecodable or cut message.
	Subject string
	Headers map[string][]string
	Cut     bool
	Size    int
	ID      string
}

// EventID is the dead-lettered event's id, "" when it is not known.
func (e Entry) EventID() string {
	if e.Undecodable {
		return e.ID
	}
	return e.Event.ID()
}

// List returns the dead letters of sink ("" = every sink) in stream order:
// those on the stream when it was called.
func List(ctx context.Context, js jetstream.JetStream, sink string) ([]Entry, error) {
	_, entries, err := list(ctx, js, sink)
	return entries, err
}

func subject(sink string) string {
	if sink == "" {
		return bus.DeadLetterPrefix + ">"
	}
	return bus.DeadLetterPrefix + sink
}

// list reads the stream message by message, each time the next one on the
// sink's subject (the server skips deleted and other sinks' messages), up to
// the last one stored when it started.
func list(ctx context.Context, js jetstream.JetStream, sink string) (jetstream.Stream, []Entry, error) {
	if strings.ContainsAny(sink, ".*> \t") {
		return nil, nil, fmt.Errorf("dead letters: %q is not a sink name", sink)
	}
	s, err := js.Stream(ctx, bus.DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, nil // no notifier ran yet: no dead letters
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters: look up stream %s: %w", bus.DeadLetterStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters: stream %s: %w", bus.DeadLetterStream, err)
	}
	if info.State.Msgs == 0 {
		return s, nil, nil
	}
	last := info.State.LastSeq
	subj := subject(sink)
	var out []Entry
	for seq := info.State.FirstSeq; seq <= last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("dead letters: read %s from sequence %d: %w", bus.DeadLetterStream, seq, err)
		}
		if m.Sequence > last {
			break
		}
		out = append(out, decode(m))
		seq = m.Sequence + 1
	}
	return s, out, nil
}

// decode turns a stored dead letter into an Entry. A garbled one is kept,
// undecodable, rather than failing the whole listing.
func decode(m *jetstream.RawStreamMsg) Entry {
	en := Entry{Seq: m.Sequence, Sink: strings.TrimPrefix(m.Subject, bus.DeadLetterPrefix), At: m.Time}
	var dl notifier.DeadLetter
	if err := json.Unmarshal(m.Data, &dl); err != nil {
		en.Undecodable, en.Raw = true, m.Data
		en.Reason = "unreadable dead letter: " + err.Error()
		return en
	}
	if dl.Sink != "" {
		en.Sink = dl.Sink
	}
	if !dl.At.IsZero() {
		en.At = dl.At
	}
	en.Reason, en.Status, en.Attempts, en.StreamSeq = dl.Reason, dl.Status, dl.Attempts, dl.StreamSeq
	en.Subject, en.Headers, en.Cut, en.Size = dl.Subject, dl.Headers, dl.Cut, dl.Size
	if dl.Event != nil && dl.Data == nil && dl.Headers == nil {
		return decodeOld(en, dl)
	}
	// The original message, as it was on the event stream.
	en.Raw = dl.Data
	if len(dl.HeaderBytes) > 0 {
		if h, err := nats.DecodeHeadersMsg(dl.HeaderBytes); err == nil {
			en.Headers = h
		}
	}
	e, err := events.FromHeaders(events.Headers(en.Headers), dl.Data)
	if err == nil {
		// A message with no id or type (found by fuzzing, issue 14) is
		// no event a sink should get.
		err = e.Validate()
	}
	if err != nil || dl.Cut {
		en.Undecodable, en.ID = true, dl.EventID
		return en
	}
	en.Event = e
	return en
}

// decodeOld reads a dead letter written before dead letters kept the
// original message: the event as a structured CloudEvent, or the raw body
// as a JSON string.
func decodeOld(en Entry, dl notifier.DeadLetter) Entry {
	var e events.Event
	if err := json.Unmarshal(dl.Event, &e); err != nil || e.Validate() != nil {
		en.Undecodable, en.Raw = true, dl.Event
		var raw string
		if json.Unmarshal(dl.Event, &raw) == nil {
			en.Raw = []byte(raw)
		}
		return en
	}
	en.Event = e
	return en
}

// Sender delivers an event: notifier.Sink satisfies it.
type Sender interface {
	Send(ctx context.Context, e events.Event) error
}

// SendTimeout bounds one redrive send, on top of the sink's own timeout.
const SendTimeout = 30 * time.Second

// Failure is a dead letter that was not redriven.
type Failure struct {
	Seq     uint64
	Sink    string
	EventID string // "" for an undecodable dead letter
	Reason  string
}

// RedriveStats says what a redrive did.
type RedriveStats struct {
	Matched int // dead letters selected by the sink and id filters
	// Sent were taken by their sink and removed from the stream.
	Sent int
	// Failed were sent but refused (or could not be sent at all, such as
	// an undecodable one); they stay on the stream, as they were.
	Failed []Failure
	// UnknownSinks counts, per sink name, the dead letters left alone
	// because no such sink is configured any more.
	UnknownSinks map[string]int
	// NotRemoved were taken by their sink, but removing their dead letter
	// failed: it is still listed, and a later redrive sends the event
	// again (with the same id, so a receiver can drop the copy).
	NotRemoved []Failure
}

// Skipped is how many dead letters were left for an unknown sink.
func (s RedriveStats) Skipped() int {
	n := 0
	for _, c := range s.UnknownSinks {
		n += c
	}
	return n
}

// String summarises the redrive in one line, e.g. "3 sent, 1 failed, 2 left
// for sink old-hook, which is not configured".
func (s RedriveStats) String() string {
	if s.Matched == 0 {
		return "no dead letters to redrive"
	}
	parts := []string{fmt.Sprintf("%d of %d sent", s.Sent, s.Matched)}
	if len(s.Failed) > 0 {
		parts = append(parts, fmt.Sprintf("%d failed and kept", len(s.Failed)))
	}
	if len(s.NotRemoved) > 0 {
		parts = append(parts, fmt.Sprintf("%d sent but still listed (removing them failed)", len(s.NotRemoved)))
	}
	names := make([]string, 0, len(s.UnknownSinks))
	for n := range s.UnknownSinks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%d left for sink %s, which is not configured", s.UnknownSinks[n], n))
	}
	return strings.Join(parts, ", ")
}

// ErrNoMatch is returned by Redrive when an event id was given and no dead
// letter (of the sink, if one was given) has it.
var ErrNoMatch = errors.New("no dead letter matches")

// ErrFailed is wrapped by the error Redrive returns when a selected dead
// letter was not redriven: its sink refused it, it holds no event, or it
// was delivered but could not be removed.
var ErrFailed = errors.New("dead letters not redriven")

// Redrive sends the dead letters of sink ("" = every sink) again, or only
// those of event id when id is not "", each to the sender of its sink
// (sinks is keyed by sink name), one attempt each, in stream order. A dead
// letter its sink takes is removed from the stream; one it refuses stays as
// it was. A dead letter of a sink missing from sinks (no longer configured)
// is reported and left alone; that is not an error. progress (nil = none)
// gets a line per dead letter and a summary line.
//
// The error is non-nil when the stream could not be read or ctx ended
// (stats say how far the redrive got), ErrNoMatch when id matched nothing,
// or wraps ErrFailed when a dead letter failed; stats are filled in every
// case.
func Redrive(ctx context.Context, js jetstream.JetStream, sinks map[string]Sender, sink, id string, progress io.Writer) (RedriveStats, error) {
	if progress == nil {
		progress = io.Discard
	}
	stats := RedriveStats{UnknownSinks: map[string]int{}}
	s, entries, err := list(ctx, js, sink)
	if err != nil {
		return stats, err
	}
	var picked []Entry
	for _, en := range entries {
		if id == "" || en.EventID() == id {
			picked = append(picked, en)
		}
	}
	results := sendAll(ctx, sinks, picked)
	// What was sent is removed even when ctx ended meanwhile (a timeout, a
	// Ctrl-C): left in place, it would be sent again by the next redrive.
	// The removals get a bound of their own.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeGrace)
	defer cancel()
	stopped := false
	for i, en := range picked {
		stats.Matched++
		what := describe(en)
		err := results[i]
		switch {
		case errors.Is(err, errUnknownSink):
			stats.UnknownSinks[en.Sink]++
			fmt.Fprintf(progress, "skipped %s: sink %s is not configured\n", what, en.Sink)
			continue
		case errors.Is(err, errNotSendable):
			f := Failure{Seq: en.Seq, Sink: en.Sink, EventID: en.EventID(), Reason: notSendable(en)}
			stats.Failed = append(stats.Failed, f)
			fmt.Fprintf(progress, "failed  %s: %s\n", what, f.Reason)
			continue
		case err != nil && ctx.Err() != nil:
			// Cut off (or never tried), not refused: not counted either
			// way, and kept.
			stats.Matched--
			stopped = true
			continue
		case err != nil:
			f := Failure{Seq: en.Seq, Sink: en.Sink, EventID: en.EventID(), Reason: err.Error()}
			stats.Failed = append(stats.Failed, f)
			fmt.Fprintf(progress, "failed  %s: %v (kept)\n", what, err)
			continue
		}
		if err := remove(rctx, s, en.Seq); err != nil {
			f := Failure{Seq: en.Seq, Sink: en.Sink, EventID: en.EventID(), Reason: "sent, but removing the dead letter failed: " + err.Error()}
			stats.NotRemoved = append(stats.NotRemoved, f)
			fmt.Fprintf(progress, "sent    %s, but removing the dead letter failed: %v\n", what, err)
			continue
		}
		stats.Sent++
		fmt.Fprintf(progress, "sent    %s\n", what)
	}
	if stopped || ctx.Err() != nil {
		fmt.Fprintf(progress, "redrive stopped: %s\n", stats)
		return stats, fmt.Errorf("redrive stopped: %w (%s)", cmp.Or(ctx.Err(), context.Canceled), stats)
	}
	if id != "" && stats.Matched == 0 {
		in := ""
		if sink != "" {
			in = " of sink " + sink
		}
		return stats, fmt.Errorf("%w event id %s%s", ErrNoMatch, id, in)
	}
	fmt.Fprintf(progress, "redrive: %s\n", stats)
	if n := len(stats.Failed) + len(stats.NotRemoved); n > 0 {
		return stats, fmt.Errorf("%w: %d of %d (%s)", ErrFailed, n, stats.Matched, stats)
	}
	return stats, nil
}

// removeGrace bounds the removal of the dead letters a redrive sent, which
// goes on after the redrive's own context ended.
const removeGrace = 30 * time.Second

var (
	errUnknownSink = errors.New("sink not configured")
	errNotSendable = errors.New("dead letter holds nothing to send")
)

func notSendable(en Entry) string {
	if en.Cut {
		return fmt.Sprintf("the message (%d bytes) was too large to store whole; only its start is kept, which cannot be sent", en.Size)
	}
	return "holds no event to send"
}

// sendAll sends every entry to its sink, one attempt each, and returns the
// outcome of each, in order. A sink's entries go out in stream order, as
// many at once as the sink takes (its Concurrency, 1 unless it says): a
// Slack sink digests only the events in flight, and past its threshold a
// lone Send waits a whole digest window, so fifty dead letters redriven to
// Slack one at a time timed out from the eleventh on.
func sendAll(ctx context.Context, sinks map[string]Sender, entries []Entry) []error {
	out := make([]error, len(entries))
	slots := map[string]chan struct{}{}
	var wg sync.WaitGroup
	for i, en := range entries {
		snd, ok := sinks[en.Sink]
		switch {
		case !ok || snd == nil:
			out[i] = errUnknownSink
			continue
		case en.Undecodable:
			out[i] = errNotSendable
			continue
		}
		sem := slots[en.Sink]
		if sem == nil {
			n := 1
			if c, ok := snd.(interface{ Concurrency() int }); ok && c.Concurrency() > 1 {
				n = c.Concurrency()
			}
			sem = make(chan struct{}, n)
			slots[en.Sink] = sem
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			out[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			timeout := SendTimeout
			if t, ok := snd.(interface{ SendTimeout() time.Duration }); ok {
				timeout = max(timeout, t.SendTimeout()+5*time.Second)
			}
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i] = snd.Send(sctx, en.Event)
		}()
	}
	wg.Wait()
	return out
}

// remove deletes a redriven dead letter. One already gone (another redrive
// took it) counts as removed.
func remove(ctx context.Context, s jetstream.Stream, seq uint64) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := s.DeleteMsg(dctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && msgGone(ctx, s, seq) {
		return nil
	}
	return err
}

func msgGone(ctx context.Context, s jetstream.Stream, seq uint64) bool {
	_, err := s.GetMsg(ctx, seq)
	return errors.Is(err, jetstream.ErrMsgNotFound)
}

func describe(en Entry) string {
	if en.Undecodable {
		return fmt.Sprintf("#%d (sink %s, undecodable)", en.Seq, shown(en.Sink))
	}
	return fmt.Sprintf("#%d %s %s %s to %s", en.Seq, shown(en.Event.ID()), shown(en.Event.Type()), shown(user(en)), shown(en.Sink))
}

// fieldWidth bounds every field Print and the redrive progress show.
const fieldWidth = 200

// shown makes a stored value safe for a terminal: the event id, the e-mail
// address and the reason come from directory data and sinks' answers, and
// a newline or an escape sequence in them must not forge a table row or
// drive the terminal.
func shown(s string) string { return redact.Excerpt(s, fieldWidth) }

// user names the event's user: source/subject, with the e-mail address when
// the event carries one.
func user(en Entry) string {
	if en.Undecodable {
		return "-"
	}
	u := events.SourceName(en.Event) + "/" + en.Event.Subject()
	if d, err := events.DecodeData(en.Event); err == nil && d.User.Email != "" {
		u += " <" + d.User.Email + ">"
	}
	return u
}

// reasonWidth is where Print cuts a long reason.
const reasonWidth = 60

// Print writes entries as a table: sequence, time, sink, event id and type,
// user, attempts, last status and reason (cut at 60 characters).
func Print(w io.Writer, entries []Entry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tSINK\tEVENT\tTYPE\tUSER\tATTEMPTS\tSTATUS\tREASON")
	for _, en := range entries {
		id, typ := "-", "-"
		if !en.Undecodable {
			id, typ = en.Event.ID(), en.Event.Type()
		}
		status := "-"
		if en.Status != 0 {
			status = strconv.Itoa(en.Status)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", en.Seq, en.At.UTC().Format(time.RFC3339),
			shown(en.Sink), shown(id), shown(typ), shown(user(en)), en.Attempts, status, redact.Excerpt(en.Reason, reasonWidth))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d dead letter(s)\n", len(entries))
}
