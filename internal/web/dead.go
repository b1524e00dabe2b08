package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/redact"
	"github.com/rollcall/rollcall/pkg/events"
)

type deadRow struct {
	Entry  deadletter.Entry
	ID     string
	Type   string
	Source string
	UserID string
	Email  string // or the user name when there is none: who it is
	Reason string
}

type deadGroup struct {
	Sink string
	Rows []deadRow
}

type deadData struct {
	Groups  []deadGroup
	Total   int
	Err     string
	CanSend bool
	Result  *redriveResult
}

type redriveResult struct {
	What     string
	Summary  string
	Failures []deadletter.Failure
	Err      string
	OK       bool
}

func (s *Server) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, "deadletters.html", http.StatusOK, s.page(r, "dead", "Dead letters", s.deadData(r.Context(), nil)))
}

func (s *Server) deadData(ctx context.Context, res *redriveResult) deadData {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	d := deadData{CanSend: s.cfg.Redrive != nil, Result: res}
	entries, err := s.listDead(ctx)
	if err != nil {
		s.cfg.Log.Warn("console: list dead letters", "err", err)
		d.Err = "The dead letters could not be read; the console's log says why."
	}
	d.Total = len(entries)
	at := map[string]int{}
	for _, e := range entries {
		i, ok := at[e.Sink]
		if !ok {
			i = len(d.Groups)
			at[e.Sink] = i
			d.Groups = append(d.Groups, deadGroup{Sink: e.Sink})
		}
		d.Groups[i].Rows = append(d.Groups[i].Rows, deadRowOf(e))
	}
	return d
}

func deadRowOf(e deadletter.Entry) deadRow {
	row := deadRow{Entry: e, ID: e.EventID(), Reason: redact.Excerpt(e.Reason, 300)}
	if e.Undecodable {
		return row
	}
	row.Type, row.Source, row.UserID = e.Event.Type(), events.SourceName(e.Event), e.Event.Subject()
	if d, err := events.DecodeData(e.Event); err == nil {
		row.Email = d.User.Email
		if row.Email == "" {
			row.Email = d.User.UserName
		}
	}
	return row
}

// redriveTimeout bounds a redrive started from the page.
var redriveTimeout = 2 * time.Minute // a var for the review 18b test under the openbreaks tag

// redrive sends one dead letter, or all of a sink's, again: a POST with
// the form's CSRF token, answered with the list and what the redrive did.
func (s *Server) redrive(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if !s.csrf.valid(userOf(r), r.PostForm.Get("csrf")) {
		s.fail(w, r, http.StatusForbidden, "The form has expired or did not come from this console; reload the page and try again.")
		return
	}
	if s.cfg.Redrive == nil {
		s.fail(w, r, http.StatusForbidden, "This console may not redrive: its NATS user is read-only. Use notifier deadletter redrive.")
		return
	}
	sink, id := r.PostForm.Get("sink"), r.PostForm.Get("id")
	if sink == "" {
		s.fail(w, r, http.StatusBadRequest, "Which sink's dead letters should be sent again?")
		return
	}
	// Not cut off when the request ends: a browser drops the first POST
	// when the form is sent again, and a tab may be closed. A redrive
	// stopped between sending and removing leaves the dead letters it
	// sent, and the next redrive would send them again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), redriveTimeout)
	defer cancel()
	unlock, waited, err := s.lockSink(ctx, sink)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Another redrive of "+sink+" is still under way; look at the dead letters again in a moment.")
		return
	}
	stats, err := s.cfg.Redrive(ctx, sink, id)
	unlock()
	s.forgetDead()
	res := &redriveResult{What: "every dead letter of " + sink, Summary: stats.String(), Failures: stats.Failed, OK: err == nil}
	if id != "" {
		res.What = "event " + id + " to " + sink
	}
	switch {
	case id != "" && errors.Is(err, deadletter.ErrNoMatch):
		// Most often the same form sent twice: the first redrive took
		// the dead letter off the list before this one looked.
		res.Summary, res.OK = "already redriven: it is no longer a dead letter of "+sink+" (an earlier click, another console or the command line sent it again, or it was removed). Nothing was sent.", true
	case id == "" && err == nil && stats.Matched == 0 && waited:
		res.Summary = "already redriven: the redrive just before this one took every dead letter of " + sink + ". Nothing was sent."
	case err != nil && !errors.Is(err, deadletter.ErrFailed):
		res.Err = redact.Excerpt(err.Error(), 600)
	}
	s.cfg.Log.Info("console: redrive", "user", userOf(r), "sink", sink, "id", id, "result", res.Summary, "err", err)
	status := http.StatusOK
	if !res.OK {
		status = http.StatusConflict
	}
	s.render(w, "deadletters.html", status, s.page(r, "dead", "Dead letters", s.deadData(r.Context(), res)))
}

// sinkLock is one sink's redrive lock: a slot taken while a redrive runs,
// and how many requests hold or wait for it (the entry goes when none).
type sinkLock struct {
	slot chan struct{}
	refs int
}

// lockSink waits until no other redrive of sink runs in this console, or
// ctx ends, and takes the sink; waited says whether another had it.
// Redrive reads the dead letters, sends, and only then removes what was
// sent: two at once would both read and both send the same dead letter.
func (s *Server) lockSink(ctx context.Context, sink string) (unlock func(), waited bool, err error) {
	s.redriveMu.Lock()
	l := s.redriving[sink]
	if l == nil {
		l = &sinkLock{slot: make(chan struct{}, 1)}
		s.redriving[sink] = l
	}
	l.refs++
	s.redriveMu.Unlock()
	release := func() {
		s.redriveMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.redriving, sink)
		}
		s.redriveMu.Unlock()
	}
	select {
	case l.slot <- struct{}{}:
	default:
		waited = true
		select {
		case l.slot <- struct{}{}:
		case <-ctx.Done():
			release()
			return nil, true, fmt.Errorf("wait for the redrive of %s under way: %w", sink, ctx.Err())
		}
	}
	return func() {
		<-l.slot
		release()
	}, waited, nil
}
