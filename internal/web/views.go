package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/state"
)

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // which entry of the navigation is current
	User    string
	Query   string
	CSRF    string
	Refresh int // milliseconds; 0 = the page does not refresh itself
	Now     time.Time
	Data    any
}

func (s *Server) page(r *http.Request, nav, title string, data any) page {
	u := userOf(r)
	return page{Title: title, Nav: nav, User: u, CSRF: s.csrf.token(u), Now: s.cfg.Now().UTC(), Data: data}
}

// render writes a whole page; a template that fails writes a plain error
// instead of half a page.
func (s *Server) render(w http.ResponseWriter, name string, status int, p page) {
	s.renderBlock(w, name, "layout", status, p)
}

func (s *Server) renderBlock(w http.ResponseWriter, name, block string, status int, p page) {
	var b bytes.Buffer
	if err := s.tmpl[name].ExecuteTemplate(&b, block, p); err != nil {
		s.cfg.Log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be shown; the console's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, "error.html", status, s.page(r, "", "Problem", msg))
}

// readTimeout bounds what one page asks of NATS.
const readTimeout = 5 * time.Second

// sourceRow is a source on the overview.
type sourceRow struct {
	SourceStat
	LastRun  time.Time
	Health   string
	Class    string // ok, warn or bad: the health's colour
	Held     *state.HeldRemovals
	Poller   string
	StateErr string
}

// sinkRow is a sink on the overview.
type sinkRow struct {
	sinkView
	Delivered24, Dead24, DeadNow int
}

type overviewData struct {
	Sources []sourceRow
	Sinks   []sinkRow
	Chart   template.HTML
	Days    []dayCount
	Types   []string
	DeadErr string
	Events  int
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	p := s.page(r, "overview", "Overview", s.overviewData(r.Context()))
	p.Refresh = int(s.cfg.Refresh / time.Millisecond)
	s.render(w, "overview.html", http.StatusOK, p)
}

func (s *Server) overviewFragment(w http.ResponseWriter, r *http.Request) {
	s.renderBlock(w, "overview.html", "live", http.StatusOK, s.page(r, "overview", "Overview", s.overviewData(r.Context())))
}

func (s *Server) overviewData(ctx context.Context) overviewData {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	now := s.cfg.Now()
	d := overviewData{Sources: s.sourceRows(ctx, now)}
	recent := s.idx.Since(now.Add(-31 * 24 * time.Hour))
	d.Days, d.Types = countDays(recent, now, 30)
	d.Chart = chartSVG(d.Days, d.Types)
	d.Events = len(recent)
	dead, entries, err := s.deadLetters(ctx)
	if err != nil {
		d.DeadErr = "the dead letters could not be read"
		s.cfg.Log.Warn("console: read dead letters", "err", err)
	}
	d.Sinks = s.sinkRows(ctx, now, recent, dead, entries)
	return d
}

func (s *Server) sourceRows(ctx context.Context, now time.Time) []sourceRow {
	stats := s.idx.Sources()
	kv, kvErr := s.sourcesKV(ctx)
	out := make([]sourceRow, 0, len(stats))
	for _, st := range stats {
		row := sourceRow{SourceStat: st}
		if kvErr != nil {
			row.StateErr = "not readable with the console's NATS user"
			row.Health, row.Class = "unknown", "warn"
		} else {
			s.readSource(ctx, kv, now, &row)
		}
		out = append(out, row)
	}
	return out
}

// kvRetry is how long a refusal to open rollcall_sources is believed: a
// read-only user is refused every time, and each refusal may take a
// timeout to arrive.
const kvRetry = time.Minute

// sourcesKV opens rollcall_sources, once; a failure is remembered for
// kvRetry so that a page does not wait for it each time.
func (s *Server) sourcesKV(ctx context.Context) (jetstream.KeyValue, error) {
	s.kvMu.Lock()
	defer s.kvMu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	if s.kvErr != nil && time.Since(s.kvAt) < kvRetry {
		return nil, s.kvErr
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s.kv, s.kvErr = s.cfg.JS.KeyValue(c, bus.SourcesBucket)
	s.kvAt = time.Now()
	return s.kv, s.kvErr
}

// staleAfter is when a source whose last complete run is older is late: a
// day (VPP's full sync interval) and some.
const staleAfter = 26 * time.Hour

// readSource fills in a source's bookkeeping from rollcall_sources: the
// last complete run, held removals, the poller holding its lease, and from
// those its health.
func (s *Server) readSource(ctx context.Context, kv jetstream.KeyValue, now time.Time, row *sourceRow) {
	st, _, err := state.NewSources(kv).Get(ctx, row.Name)
	if err != nil {
		row.StateErr, row.Health, row.Class = "could not be read", "unknown", "warn"
		return
	}
	row.LastRun, row.Held = st.LastFullSync, st.Held
	if l, err := state.NewLeases(kv).Holder(ctx, row.Name); err == nil && l.Owner != "" {
		row.Poller = "no poller holds its lease"
		if l.Expires.After(now) {
			row.Poller = "polled by " + l.Owner
		}
	}
	switch {
	case !st.Seeded:
		row.Health, row.Class = "waiting for its first complete run", "warn"
	case st.Held != nil:
		row.Health, row.Class = fmt.Sprintf("%d removals held", st.Held.Count), "bad"
	case now.Sub(st.LastFullSync) > staleAfter:
		row.Health, row.Class = "late: no complete run for "+ago(now, st.LastFullSync), "bad"
	case row.Poller == "no poller holds its lease":
		row.Health, row.Class = "no poller running", "bad"
	default:
		row.Health, row.Class = "healthy", "ok"
	}
}

// sinks are the configured sinks and any other sink with dead letters.
func (s *Server) sinks(entries []deadletter.Entry) []Sink {
	out := append([]Sink(nil), s.cfg.Sinks...)
	seen := map[string]bool{}
	for _, k := range out {
		seen[k.Name] = true
	}
	for _, e := range entries {
		if !seen[e.Sink] {
			seen[e.Sink] = true
			out = append(out, Sink{Name: e.Sink})
		}
	}
	return out
}

func (s *Server) sinkRows(ctx context.Context, now time.Time, recent []EventRef, dead map[deadKey]bool, entries []deadletter.Entry) []sinkRow {
	views := readSinks(ctx, s.cfg.JS, s.sinks(entries))
	dayAgo := now.Add(-24 * time.Hour)
	out := make([]sinkRow, len(views))
	for i, v := range views {
		row := sinkRow{sinkView: v}
		for _, ev := range recent {
			if !ev.Stored.Before(dayAgo) && v.status(ev, dead) == stDelivered {
				row.Delivered24++
			}
		}
		for _, e := range entries {
			if e.Sink == v.Name {
				row.DeadNow++
				if !e.At.Before(dayAgo) {
					row.Dead24++
				}
			}
		}
		out[i] = row
	}
	return out
}

type searchData struct {
	Hits    []Hit
	Total   int
	Took    time.Duration
	Limit   int
	Indexed int
}

// searchLimit is how many hits a search lists.
const searchLimit = 100

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	start := time.Now()
	hits, total := s.idx.Search(q, searchLimit)
	d := searchData{Hits: hits, Total: total, Took: time.Since(start), Limit: searchLimit}
	p := s.page(r, "search", "Search", d)
	if q != "" {
		p.Title = "Search: " + q
	}
	p.Query = q
	s.render(w, "search.html", http.StatusOK, p)
}

// userURL links a user's timeline.
func userURL(source, id string) string {
	return "/user?" + url.Values{"source": {source}, "id": {id}}.Encode()
}

// intParam reads a positive integer query parameter, def when absent or
// not one.
func intParam(r *http.Request, name string, def int) int {
	n, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || n < 1 {
		return def
	}
	return n
}

var errNotFound = errors.New("not found")
