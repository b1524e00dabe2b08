// Package replay answers audit questions from the event stream (SPEC §3.2,
// `notifier replay`): it sends the events matching a filter to a sink, in
// stream order, up to the end of the stream as it was when the replay
// began, and rebuilds a source's directory as it was at a given time from
// the source's baseline and the events after it.
//
// Filters become consumer filter subjects, so the server does the
// selecting: a user of a source is read from its own subject
// (rollcall.events.<source>.<userkey>.>) without scanning the stream.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/pkg/events"
)

// DefaultSkew is how far, by default, an event's time (when the poller
// observed the change) may lie before the time the stream stored it:
// publish latency, retries and clock differences between a poller and the
// NATS server. Since and Until apply to event times; the stream is entered
// at Since-Skew and left once a message was stored after Until+Skew.
const DefaultSkew = 5 * time.Minute

// DefaultProgressEvery is how often progress is written during a replay.
const DefaultProgressEvery = time.Second

// Options selects what a replay sends.
type Options struct {
	// Since and Until bound the events' time (inclusive); zero = open.
	Since, Until time.Time
	// Types are event types (user.registered, …); empty = all.
	Types []string
	// Source is a source name; empty = every source.
	Source string
	// User is a source's own user id (VPP userId, Veeam instanceUid). With
	// Source it is that source's user; without, that id in every source.
	User string
	// Users are users of named sources (ResolveUser finds them from an
	// e-mail address or user name): their whole histories, in stream
	// order. Not together with User.
	Users []UserRef
	// AsOf, with Source, asks for the directory as it was at that time
	// instead of events: see Directory. Replay refuses it.
	AsOf time.Time
	// Progress receives progress lines during a replay (every
	// ProgressEvery) and a final summary; nil = none. Meant for stderr.
	Progress io.Writer
	// ProgressEvery is the interval of progress lines; default
	// DefaultProgressEvery.
	ProgressEvery time.Duration
	// Skew is how far an event's time may precede its storage on the
	// stream; default DefaultSkew. Only where the stream is entered and
	// left depends on it, never which events are sent.
	Skew time.Duration
	// InFlight is how many Sends may run at once; default 1, which sends
	// strictly in stream order, each after the previous one returned.
	// More hand events out in stream order to concurrent Sends, so the
	// sink may see neighbours swapped. The slack sink needs it: it digests
	// only the events in flight, and past its threshold a lone Send waits
	// a whole DigestWindow, so give it the sink's Concurrency().
	InFlight int
}

// Sink receives replayed events; the console, webhook and slack sinks
// satisfy it.
type Sink interface {
	Send(ctx context.Context, e events.Event) error
}

// Stats counts what a replay did.
type Stats struct {
	// EndSeq is the stream's last sequence when the replay began: nothing
	// stored after it is replayed.
	EndSeq uint64
	// Matched is how many stored messages matched the filters when the
	// replay began (the server's count for the consumer).
	Matched uint64
	// Read is how many messages the replay received from the server up
	// to EndSeq; with Until it includes the one stored after Until+Skew
	// that ended the replay, which is not sent.
	Read int
	// Sent is how many events went to the sink.
	Sent int
	// Skipped counts messages read whose event time lies outside
	// Since/Until.
	Skipped int
	// Undecodable counts messages that are not rollcall events; each is
	// reported on Progress and makes Replay return ErrUndecodable.
	Undecodable int
	// LastSeq is the stream sequence of the last message read.
	LastSeq uint64
	// Elapsed is the replay's duration.
	Elapsed time.Duration
}

// Errors callers may test for with errors.Is.
var (
	// ErrInvalidOptions: the options contradict each other or name
	// something that cannot exist (an unknown type, an invalid source).
	ErrInvalidOptions = errors.New("invalid replay options")
	// ErrUndecodable: the replay went to the end, but some messages could
	// not be decoded and were not sent.
	ErrUndecodable = errors.New("messages could not be decoded")
	// ErrSink: the sink refused an event; the replay stopped there.
	ErrSink = errors.New("sink failed")
)

// Validate checks o. With AsOf set it checks a directory query (Source
// required; no Since, Until, Types or User), otherwise an event replay.
func (o Options) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if o.Source != "" && !events.ValidSourceName(o.Source) {
		return bad("source %q is not a valid source name (lower-case letters, digits, '-' and '_', starting with a letter)", o.Source)
	}
	for _, t := range o.Types {
		if !slices.Contains(events.Types, t) {
			return bad("unknown event type %q (known: %s)", t, strings.Join(events.Types, ", "))
		}
	}
	if o.User != "" && len(o.Users) > 0 {
		return bad("User and Users do not combine")
	}
	for _, u := range o.Users {
		if !events.ValidSourceName(u.Source) || u.ID == "" {
			return bad("user %q of source %q: a user needs a valid source and an id", u.ID, u.Source)
		}
	}
	if !o.AsOf.IsZero() {
		if o.Source == "" {
			return bad("--as-of needs --source: the directory is rebuilt per source")
		}
		if !o.Since.IsZero() || !o.Until.IsZero() || len(o.Types) > 0 || o.User != "" || len(o.Users) > 0 {
			return bad("--as-of prints a directory; it does not combine with --since, --until, --type or --user")
		}
		return nil
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && o.Until.Before(o.Since) {
		return bad("--until %s is before --since %s", o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	if o.Skew < 0 || o.ProgressEvery < 0 || o.InFlight < 0 {
		return bad("skew, progress interval and sends in flight must not be negative")
	}
	return nil
}

// FilterSubjects returns the consumer filter subjects for o's Source, User
// and Types; nil means the whole stream. A user's subjects name the user's
// key, so the server reads them from its subject index.
func FilterSubjects(o Options) []string {
	if len(o.Users) > 0 {
		var out []string
		for _, u := range o.Users {
			one := o
			one.Users, one.Source, one.User = nil, u.Source, u.ID
			for _, f := range FilterSubjects(one) {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
		return out
	}
	src, key := "*", "*"
	if o.Source != "" {
		src = o.Source
	}
	if o.User != "" {
		key = events.EncodeKey(o.User)
	}
	prefix := events.SubjectPrefix + src + "." + key + "."
	var types []string
	for _, t := range o.Types {
		if !slices.Contains(types, t) {
			types = append(types, t) // overlapping filters are refused
		}
	}
	if len(types) == 0 {
		switch {
		case src == "*" && key == "*":
			return nil
		case key == "*":
			return []string{events.SubjectPrefix + src + ".>"}
		}
		return []string{prefix + ">"}
	}
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = prefix + t
	}
	return out
}

// Replay sends the events matching o to out in stream order, from the
// start of the stream (or Since) to the end of the stream as it was when
// Replay began (or Until), and returns. It never waits for new events. A
// send that fails stops the replay with an error wrapping ErrSink and the
// sink's error.
func Replay(ctx context.Context, js jetstream.JetStream, o Options, out Sink) (Stats, error) {
	var stats Stats
	if err := o.Validate(); err != nil {
		return stats, err
	}
	if !o.AsOf.IsZero() {
		return stats, fmt.Errorf("%w: --as-of prints a directory: use Directory", ErrInvalidOptions)
	}
	if out == nil {
		return stats, fmt.Errorf("%w: no sink", ErrInvalidOptions)
	}
	if o.Skew == 0 {
		o.Skew = DefaultSkew
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	began := time.Now()
	p := &progress{w: o.Progress, every: o.ProgressEvery, began: began, last: began}
	spec := scanSpec{filters: FilterSubjects(o)}
	if !o.Since.IsZero() {
		spec.start = o.Since.Add(-o.Skew)
	}
	if !o.Until.IsZero() {
		spec.stopAfter = o.Until.Add(o.Skew)
	}
	var badSeqs []uint64
	snd := newSender(ctx, out, max(o.InFlight, 1))
	st, err := scan(ctx, js, spec, func(msg jetstream.Msg, md *jetstream.MsgMetadata, st *scanState) error {
		stats.Read, stats.LastSeq, stats.Matched, stats.EndSeq = st.Read, st.LastSeq, st.Matched, st.EndSeq
		defer func() {
			stats.Sent = snd.count()
			p.tick(&stats)
		}()
		e, err := events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
		if err != nil {
			stats.Undecodable++
			badSeqs = append(badSeqs, md.Sequence.Stream)
			p.printf("replay: stream seq %d (%s) is not a rollcall event, not sent: %v\n", md.Sequence.Stream, msg.Subject(), err)
			return nil
		}
		if t := e.Time(); !o.Since.IsZero() && t.Before(o.Since) || !o.Until.IsZero() && t.After(o.Until) {
			stats.Skipped++
			return nil
		}
		return snd.send(e, md.Sequence.Stream)
	})
	if serr := snd.wait(); serr != nil && (err == nil || errors.Is(err, context.Canceled) && !errors.Is(serr, context.Canceled)) {
		err = serr
	}
	stats.Read, stats.LastSeq, stats.Matched, stats.EndSeq = st.Read, st.LastSeq, st.Matched, st.EndSeq
	stats.Sent = snd.count()
	stats.Elapsed = time.Since(began)
	if err == nil && stats.Undecodable > 0 {
		err = fmt.Errorf("%w: %d, at stream seq %s", ErrUndecodable, stats.Undecodable, seqList(badSeqs))
	}
	if err != nil {
		err = fmt.Errorf("replay: %w", err)
	}
	p.summary(&stats, st.Stopped, err)
	return stats, err
}

// sender hands events to the sink, one at a time or up to inFlight at
// once, and keeps the first failure.
type sender struct {
	ctx    context.Context
	cancel context.CancelFunc
	out    Sink
	sem    chan struct{}
	wg     sync.WaitGroup
	sent   atomic.Int64

	mu  sync.Mutex
	err error
}

func newSender(ctx context.Context, out Sink, inFlight int) *sender {
	ctx, cancel := context.WithCancel(ctx)
	return &sender{ctx: ctx, cancel: cancel, out: out, sem: make(chan struct{}, inFlight)}
}

func (s *sender) count() int { return int(s.sent.Load()) }

func (s *sender) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// send sends e, or starts sending it once fewer than inFlight sends run.
// It returns the first failure of any send.
func (s *sender) send(e events.Event, seq uint64) error {
	if err := s.failed(); err != nil {
		return err
	}
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		if err := s.failed(); err != nil {
			return err
		}
		return s.ctx.Err()
	}
	do := func() error {
		defer func() { <-s.sem }()
		if err := s.out.Send(s.ctx, e); err != nil {
			err = fmt.Errorf("%w: event %s (%s of user %q in %s, stream seq %d) after %d sent: %w",
				ErrSink, e.ID(), e.Type(), e.Subject(), events.SourceName(e), seq, s.count(), err)
			s.mu.Lock()
			if s.err == nil {
				s.err = err
				s.cancel() // the sends still in flight are abandoned
			}
			s.mu.Unlock()
			return err
		}
		s.sent.Add(1)
		return nil
	}
	if cap(s.sem) == 1 {
		return do()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = do()
	}()
	return nil
}

// wait waits for the sends in flight and returns the first failure.
func (s *sender) wait() error {
	s.wg.Wait()
	s.cancel()
	return s.failed()
}

func seqList(seqs []uint64) string {
	const max = 10
	var b strings.Builder
	for i, s := range seqs {
		if i == max {
			fmt.Fprintf(&b, ", … (%d more)", len(seqs)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, s)
	}
	return b.String()
}

// progress writes progress lines and the summary.
type progress struct {
	w     io.Writer
	every time.Duration
	began time.Time
	last  time.Time
}

func (p *progress) printf(format string, a ...any) {
	if p.w != nil {
		fmt.Fprintf(p.w, format, a...)
	}
}

func (p *progress) tick(s *Stats) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	pct := ""
	if s.Matched > 0 {
		pct = fmt.Sprintf(" (%d%%)", min(100, uint64(s.Read)*100/s.Matched))
	}
	rate := float64(s.Read) / now.Sub(p.began).Seconds()
	p.printf("replay: %d of %d messages read%s, %d sent, stream seq %d of %d, %.0f/s\n",
		s.Read, s.Matched, pct, s.Sent, s.LastSeq, s.EndSeq, rate)
}

func (p *progress) summary(s *Stats, stopped string, err error) {
	if p.w == nil {
		return
	}
	var b strings.Builder
	switch {
	case err != nil && !errors.Is(err, ErrUndecodable):
		b.WriteString("replay: stopped: ")
	default:
		b.WriteString("replay: done: ")
	}
	fmt.Fprintf(&b, "%d sent, %d read", s.Sent, s.Read)
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %d outside --since/--until", s.Skipped)
	}
	if s.Undecodable > 0 {
		fmt.Fprintf(&b, ", %d undecodable", s.Undecodable)
	}
	switch {
	case s.EndSeq == 0:
		b.WriteString("; the stream is empty")
	case stopped == "until":
		fmt.Fprintf(&b, "; stopped at --until, stream seq %d of %d", s.LastSeq, s.EndSeq)
	case err == nil || errors.Is(err, ErrUndecodable):
		fmt.Fprintf(&b, "; end of stream at start: seq %d", s.EndSeq)
	default:
		fmt.Fprintf(&b, " at stream seq %d of %d", s.LastSeq, s.EndSeq)
	}
	fmt.Fprintf(&b, "; %s\n", s.Elapsed.Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(&b, "replay: error: %v\n", err)
	}
	p.printf("%s", b.String())
}
