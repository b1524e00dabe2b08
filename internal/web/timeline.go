package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/pkg/events"
)

// timelineRow is one event of a person's timeline with what each sink did
// with it.
type timelineRow struct {
	EventRef
	Deliveries []delivery
}

type delivery struct {
	Sink, Status string
}

type userData struct {
	User    events.User
	Rows    []timelineRow
	DeadErr string
}

func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	u, evs, ok := s.idx.User(q.Get("source"), q.Get("id"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "No user "+q.Get("id")+" in source "+q.Get("source")+" is known. Search for them by e-mail address or user name.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	d := userData{User: u}
	dead, entries, err := s.deadLetters(ctx)
	if err != nil {
		d.DeadErr = "The dead letters could not be read: a delivery shown as done may have been dead-lettered."
	}
	views := readSinks(ctx, s.cfg.JS, s.sinks(entries))
	for _, ev := range evs {
		row := timelineRow{EventRef: ev}
		for _, v := range views {
			if st := v.status(ev, dead); st != stFiltered {
				row.Deliveries = append(row.Deliveries, delivery{Sink: v.Name, Status: st})
			}
		}
		d.Rows = append(d.Rows, row)
	}
	title := u.Email
	if title == "" {
		title = u.UserName
	}
	if title == "" {
		title = u.ID
	}
	s.render(w, "user.html", http.StatusOK, s.page(r, "search", title, d))
}

type eventData struct {
	Ref  EventRef
	JSON string
}

// event shows one event whole, as the stream holds it (secrets were never
// stored; FromHeaders scrubs what an earlier release may have left).
func (s *Server) event(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.idx.Event(r.PathValue("id"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "No event with that id is on the stream.")
		return
	}
	e, err := s.readEvent(r.Context(), ref)
	if err != nil {
		s.cfg.Log.Warn("console: read event", "id", ref.ID, "err", err)
		s.fail(w, r, http.StatusBadGateway, "The event could not be read from the stream.")
		return
	}
	b, _ := json.MarshalIndent(e, "", "  ")
	s.render(w, "event.html", http.StatusOK, s.page(r, "search", "Event "+ref.ID, eventData{Ref: ref, JSON: string(b)}))
}

// errFound stops the replay once the event is in hand.
var errFound = errors.New("found")

// readEvent replays the user's history (replay.Replay, one user's subject)
// until it meets the event.
func (s *Server) readEvent(ctx context.Context, ref EventRef) (events.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	var (
		mu    sync.Mutex
		found *events.Event
	)
	_, err := replay.Replay(ctx, s.cfg.JS, replay.Options{Source: ref.Source, User: ref.UserID}, sinkFunc(func(e events.Event) error {
		if e.ID() != ref.ID {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		found = &e
		return errFound
	}))
	mu.Lock()
	defer mu.Unlock()
	if found != nil {
		return *found, nil
	}
	if err == nil {
		err = errNotFound
	}
	return events.Event{}, err
}

type sinkFunc func(events.Event) error

func (f sinkFunc) Send(_ context.Context, e events.Event) error { return f(e) }
