package replay

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
)

// idleCheck is how long a scan waits for the next message before asking
// the server whether anything is left for it. Messages the scan expects
// can vanish (MaxAge expiry, a purge) after they were counted; without
// this check the scan would wait for them forever.
const idleCheck = 5 * time.Second

// errStop ends a scan early without an error.
var errStop = errors.New("stop")

// scanSpec says which part of the event stream a scan reads.
type scanSpec struct {
	filters []string  // consumer filter subjects; none = the whole stream
	start   time.Time // first storage time to read; zero = from the start
	// stopAfter ends the scan at the first message stored after it; zero =
	// read to the end.
	stopAfter time.Time
}

// scanState is what a scan saw; visit may read it.
type scanState struct {
	EndSeq   uint64 // the stream's last sequence when the scan began
	Matched  uint64 // messages matching the filters when the consumer was created
	Read     int    // messages received from the consumer and within EndSeq
	LastSeq  uint64 // stream sequence of the last message received
	Stopped  string // why the scan ended before EndSeq, "" when it reached it
	Consumer string // the ordered consumer's name
}

// scan reads the event stream in order with an ordered consumer, calling
// visit for every message up to the stream's end as it was when the scan
// began. It never waits for messages published after that. visit returning
// errStop ends the scan without an error.
func scan(ctx context.Context, js jetstream.JetStream, spec scanSpec, visit func(jetstream.Msg, *jetstream.MsgMetadata, *scanState) error) (*scanState, error) {
	st := &scanState{}
	stream, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return st, fmt.Errorf("stream %s not found: has a poller run against this NATS server?", bus.EventsStream)
		}
		return st, fmt.Errorf("stream %s: %w", bus.EventsStream, err)
	}
	info := stream.CachedInfo()
	st.EndSeq = info.State.LastSeq
	if info.State.Msgs == 0 {
		return st, nil
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: spec.filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// The consumer is not deleted when the scan ends: the least
		// privileged replay user may not delete consumers (subject
		// permissions cannot tell this one from the notifier's), so the
		// delete would be refused, logged by the server as a violation and
		// waited for. The server removes it once it has been idle this long.
		InactiveThreshold: time.Minute,
		NamePrefix:        "replay-" + consumerSuffix(),
	}
	if !spec.start.IsZero() {
		start := spec.start.UTC()
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.OrderedConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return st, fmt.Errorf("create ordered consumer on %s: %w", bus.EventsStream, err)
	}
	if ci := cons.CachedInfo(); ci != nil {
		st.Matched, st.Consumer = ci.NumPending, ci.Name
	}
	if st.Matched == 0 {
		return st, nil
	}
	it, err := cons.Messages()
	if err != nil {
		return st, fmt.Errorf("read %s: %w", bus.EventsStream, err)
	}
	defer it.Stop()
	for {
		nctx, cancel := context.WithTimeout(ctx, idleCheck)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				done, ierr := drained(ctx, cons, st.LastSeq)
				if ierr != nil {
					return st, fmt.Errorf("read %s: nothing received for %v and %w", bus.EventsStream, idleCheck, ierr)
				}
				if done {
					return st, nil
				}
				continue
			}
			return st, fmt.Errorf("read %s after stream seq %d: %w", bus.EventsStream, st.LastSeq, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return st, fmt.Errorf("read %s after stream seq %d: %w", bus.EventsStream, st.LastSeq, err)
		}
		seq := md.Sequence.Stream
		if seq > st.EndSeq {
			// Published after the scan began.
			return st, nil
		}
		st.Read++
		st.LastSeq = seq
		if !spec.stopAfter.IsZero() && md.Timestamp.After(spec.stopAfter) {
			st.Stopped = "until"
			return st, nil
		}
		if err := visit(msg, md, st); err != nil {
			if errors.Is(err, errStop) {
				return st, nil
			}
			return st, err
		}
		if seq >= st.EndSeq || md.NumPending == 0 {
			return st, nil
		}
	}
}

// drained asks the server whether the consumer has delivered everything
// there was: nothing pending and nothing delivered beyond what the scan
// received.
func drained(ctx context.Context, cons jetstream.Consumer, lastSeq uint64) (bool, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ci, err := cons.Info(ictx)
	if err != nil {
		return false, fmt.Errorf("consumer info failed: %w", err)
	}
	return ci.NumPending == 0 && ci.Delivered.Stream <= lastSeq, nil
}

// consumerSuffix makes the consumer's name unique: "replay-<hex>_<serial>"
// tells an operator listing consumers what it is.
func consumerSuffix() string {
	var b [6]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
