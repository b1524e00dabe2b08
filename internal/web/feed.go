package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// retryWait is how long a feed waits before it starts again after an
// error (NATS away, the stream not created yet).
var retryWait = 2 * time.Second

// feedUsers keeps the index's users current from rollcall_users until ctx
// ends. NATS credentials that may not read the bucket (the read-only
// replay user of deployments/nats/accounts.conf) get the baselines
// instead, once; the stream's events keep those users current. While
// NATS cannot be reached nothing is concluded: it waits.
func feedUsers(ctx context.Context, js jetstream.JetStream, x *Index, log *slog.Logger) {
	for ctx.Err() == nil {
		if !js.Conn().IsConnected() {
			sleep(ctx, retryWait)
			continue
		}
		err := watchUsers(ctx, js, x)
		if ctx.Err() != nil {
			return
		}
		refused := errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, errNoAccess)
		if refused && js.Conn().IsConnected() {
			log.Info("console: users bucket not readable; users come from the baselines and the stream", "bucket", bus.UsersBucket, "err", err)
			for ctx.Err() == nil && seedBaselines(ctx, js, x, log) != nil {
				sleep(ctx, retryWait)
			}
			return
		}
		log.Warn("console: watch of the users bucket ended; starting it again", "err", err)
		sleep(ctx, retryWait)
	}
}

var errNoAccess = errors.New("no access")

// watchUsers applies every value of rollcall_users, then every change,
// until ctx ends or the watch fails.
func watchUsers(ctx context.Context, js jetstream.JetStream, x *Index) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	kv, err := js.KeyValue(actx, bus.UsersBucket)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("%w: %w", errNoAccess, err)
		}
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("%w: %w", errNoAccess, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				continue // the initial values are in
			}
			var r state.Record
			if json.Unmarshal(e.Value(), &r) == nil && r.User.ID != "" {
				if r.User.Source == "" {
					r.User.Source, _, _ = state.SplitKey(e.Key())
				}
				x.PutUser(r.User)
			}
		}
	}
}

// seedBaselines puts every known source's directory as it is now
// (replay.Directory: the baseline and the events after it) in the index.
// A source that cannot be read is logged and skipped; the error says only
// that the sources could not be listed.
func seedBaselines(ctx context.Context, js jetstream.JetStream, x *Index, log *slog.Logger) error {
	names, err := replay.KnownSources(ctx, js)
	if err != nil {
		if ctx.Err() == nil { // a stop is not a failure to say
			log.Warn("console: list sources", "err", err)
		}
		return err
	}
	for _, name := range names {
		users, err := replay.Directory(ctx, js, name, time.Time{})
		if errors.Is(err, replay.ErrUnknownSource) {
			continue // events only, no baseline: the stream gives its users
		}
		if errors.Is(err, replay.ErrUndecodable) {
			// The users of every event that could be read are there.
			log.Warn("console: the directory of a source holds messages that are not rollcall events; they are skipped", "source", name, "err", err)
			err = nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("console: read the directory of a source", "source", name, "err", err)
			continue
		}
		for _, u := range users {
			x.PutUser(u)
		}
	}
	return nil
}

// feedEvents applies the event stream to the index, from the start and
// then as events arrive, until ctx ends.
func feedEvents(ctx context.Context, js jetstream.JetStream, x *Index, log *slog.Logger) {
	for ctx.Err() == nil {
		err := followStream(ctx, js, x)
		if ctx.Err() != nil {
			return
		}
		log.Debug("console: reading the event stream; trying again", "err", err)
		sleep(ctx, retryWait)
	}
}

func followStream(ctx context.Context, js jetstream.JetStream, x *Index) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{bus.EventsSubjects},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
		// Unique per console: two consoles (or a restart within the
		// consumer's inactive threshold) must never share a consumer.
		NamePrefix: "console-" + rand.Text()[:12],
	}
	if last := x.LastSeq(); last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	cons, err := js.OrderedConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return fmt.Errorf("consume %s: %w", bus.EventsStream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume %s: %w", bus.EventsStream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			return err
		}
		applyMsg(x, msg)
	}
}

// applyMsg adds one stream message to the index; a message that is no
// rollcall event takes no place in it.
func applyMsg(x *Index, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	e, err := events.FromHeaders(events.Headers(msg.Headers()), msg.Data())
	if err != nil {
		return
	}
	ref := EventRef{Seq: md.Sequence.Stream, Stored: md.Timestamp, ID: e.ID(), Type: e.Type(), Time: e.Time(),
		Source: events.SourceName(e), UserID: e.Subject(), Subject: msg.Subject()}
	var after, before *events.User
	if d, err := events.DecodeData(e); err == nil {
		ref.Reason, ref.Changes = d.Reason, d.Changes
		if d.User.Source == "" {
			d.User.Source = ref.Source
		}
		after, before = &d.User, d.Previous
	}
	x.AddEvent(ref, after, before)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
