package web

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
)

// Sink is a sink the console reports on: its name (its consumer's name on
// ROLLCALL_EVENTS) and kind. Never its URL: that may hold a token.
type Sink struct {
	Name string
	Kind string // console, webhook or slack; "" when only its dead letters are known
}

// sinkView is a sink's consumer as read for one page: where its
// deliveries stand.
type sinkView struct {
	Sink
	Found    bool   // the consumer exists
	Err      string // reading it failed
	Pending  uint64 // NumPending: stored, not yet delivered
	AckFloor uint64 // every sequence up to here is done (delivered or dead-lettered)
	Filters  []string
	Policy   jetstream.DeliverPolicy
	Created  time.Time
	StartAt  time.Time
	StartSeq uint64
}

// readSinks reads every sink's consumer.
func readSinks(ctx context.Context, js jetstream.JetStream, sinks []Sink) []sinkView {
	out := make([]sinkView, len(sinks))
	for i, s := range sinks {
		v := sinkView{Sink: s}
		c, err := js.Consumer(ctx, bus.EventsStream, s.Name)
		switch {
		case err == nil:
			ci := c.CachedInfo()
			v.Found, v.Pending, v.AckFloor = true, ci.NumPending, ci.AckFloor.Stream
			v.Filters, v.Policy, v.Created, v.StartSeq = ci.Config.FilterSubjects, ci.Config.DeliverPolicy, ci.Created, ci.Config.OptStartSeq
			if ci.Config.FilterSubject != "" {
				v.Filters = append(v.Filters, ci.Config.FilterSubject)
			}
			if ci.Config.OptStartTime != nil {
				v.StartAt = *ci.Config.OptStartTime
			}
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			// Not created yet: the sink has not started; nothing to read.
		default:
			v.Err = "could not be read"
		}
		out[i] = v
	}
	return out
}

// Delivery states of an event for a sink.
const (
	stDelivered = "delivered"
	stDead      = "dead-lettered"
	stPending   = "pending"
	stNotSent   = "not sent"
	stFiltered  = "not for this sink"
	stUnknown   = "unknown"
)

// status says what became of ev at sink v: dead-lettered (a dead letter
// of the sink holds it), not for it (its filter), never sent (the sink's
// consumer began after it), delivered (at or below the ack floor, which
// the notifier moves only past events it delivered or dead-lettered), or
// pending.
func (v sinkView) status(ev EventRef, dead map[deadKey]bool) string {
	if dead[deadKey{v.Name, ev.ID}] {
		return stDead
	}
	if !v.Found {
		return stUnknown
	}
	if len(v.Filters) > 0 && !anyMatch(v.Filters, ev.Subject) {
		return stFiltered
	}
	if v.before(ev) {
		return stNotSent
	}
	if ev.Seq <= v.AckFloor {
		return stDelivered
	}
	return stPending
}

// before reports whether the consumer was set to start after ev.
func (v sinkView) before(ev EventRef) bool {
	switch v.Policy {
	case jetstream.DeliverNewPolicy:
		return ev.Stored.Before(v.Created)
	case jetstream.DeliverByStartTimePolicy:
		return ev.Stored.Before(v.StartAt)
	case jetstream.DeliverByStartSequencePolicy:
		return ev.Seq < v.StartSeq
	}
	return false
}

type deadKey struct{ sink, id string }

// deadCache is how long a listing of the dead letters serves pages: the
// listing reads them one by one, and an open overview asks every
// WEB_REFRESH. A redrive forgets it at once.
const deadCache = 3 * time.Second

// deadLetters reads ROLLCALL_DEADLETTER (deadletter.List) into a set of
// sink and event id, with the entries.
func (s *Server) deadLetters(ctx context.Context) (map[deadKey]bool, []deadletter.Entry, error) {
	entries, err := s.listDead(ctx)
	if err != nil {
		return nil, nil, err
	}
	set := make(map[deadKey]bool, len(entries))
	for _, e := range entries {
		set[deadKey{e.Sink, e.EventID()}] = true
	}
	return set, entries, nil
}

// anyMatch reports whether subject matches one of the NATS filters.
func anyMatch(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatch(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatch is NATS's subject matching: * one token, > the rest.
func subjectMatch(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || f != "*" && f != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

// listDead lists the dead letters, or returns the listing made less than
// deadCache ago.
func (s *Server) listDead(ctx context.Context) ([]deadletter.Entry, error) {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	if s.deadList != nil && time.Since(s.deadAt) < deadCache {
		return s.deadList, nil
	}
	entries, err := deadletter.List(ctx, s.cfg.JS, "")
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []deadletter.Entry{}
	}
	s.deadList, s.deadAt = entries, time.Now()
	return entries, nil
}

// forgetDead drops the cached listing: a redrive changed it.
func (s *Server) forgetDead() {
	s.deadMu.Lock()
	s.deadList = nil
	s.deadMu.Unlock()
}
