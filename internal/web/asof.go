package web

import (
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall/rollcall/internal/replay"
	"github.com/rollcall/rollcall/internal/when"
	"github.com/rollcall/rollcall/pkg/events"
)

// asOfPage is how many users a page of the directory lists.
const asOfPage = 50

type asOfData struct {
	Sources    []string
	Source     string
	At         time.Time
	AtText     string
	Date, Time string
	Users      []events.User
	Total      int
	Page       int
	Pages      int
	Err        string
	// Skipped counts messages on the source's subjects that are not
	// rollcall events: the directory is rebuilt without them, and the
	// page says so.
	Skipped   int
	SkippedAt string
	Links     []asOfLink
	CSV       string
	PrevURL   string
	NextURL   string
}

type asOfLink struct{ Label, URL string }

// asOfTime reads the time asked for: at (when.Time's forms: "1d" is a day
// ago) or the date and time fields of the form (UTC; a date alone is its
// midnight, as `replay --as-of 2026-09-01` reads it); now when neither.
func asOfTime(r *http.Request, now time.Time) (time.Time, error) {
	q := r.URL.Query()
	if at := strings.TrimSpace(q.Get("at")); at != "" {
		return when.Time(at, now)
	}
	if d := q.Get("date"); d != "" {
		clock := q.Get("time")
		if clock == "" {
			clock = "00:00:00"
		} else if len(clock) == 5 {
			clock += ":00"
		}
		return time.Parse(time.RFC3339, d+"T"+clock+"Z")
	}
	return now, nil
}

func (s *Server) asOfData(r *http.Request) (asOfData, []events.User) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	now := s.cfg.Now().UTC()
	d := asOfData{Source: r.URL.Query().Get("source")}
	d.Sources, _ = replay.KnownSources(ctx, s.cfg.JS)
	if d.Source == "" && len(d.Sources) > 0 {
		d.Source = d.Sources[0]
	}
	at, err := asOfTime(r, now)
	if err == nil {
		err = when.NotFuture(at, now)
	}
	if err != nil {
		d.Err = "That time is not understood: " + err.Error() + "."
		return d, nil
	}
	if at.IsZero() {
		// 0001-01-01T00:00:00Z is Go's zero time, which the rebuild
		// reads as now: it would list today's users as of year 1.
		d.Err = "Nothing is known before a source's first complete snapshot; pick a later time."
		return d, nil
	}
	d.At = at.UTC()
	d.AtText, d.Date, d.Time = d.At.Format(time.RFC3339Nano), d.At.Format("2006-01-02"), d.At.Format("15:04")
	for _, l := range []struct{ label, at string }{{"now", "now"}, {"an hour ago", "1h"}, {"yesterday", "1d"}, {"a week ago", "1w"}, {"30 days ago", "30d"}} {
		d.Links = append(d.Links, asOfLink{l.label, "/asof?" + url.Values{"source": {d.Source}, "at": {l.at}}.Encode()})
	}
	if d.Source == "" {
		d.Err = "No source has completed a first snapshot yet."
		return d, nil
	}
	if !slices.Contains(d.Sources, d.Source) {
		d.Err = "There is no source " + d.Source + "."
		return d, nil
	}
	users, stats, err := s.directory(ctx, d.Source, d.At)
	switch {
	case errors.Is(err, replay.ErrUndecodable):
		// Logged once, when rebuilt (directory); the page and the CSV
		// say it every time.
		d.Skipped, d.SkippedAt = stats.Undecodable, seqs(stats)
	case errors.Is(err, replay.ErrUnknownSource):
		d.Err = d.Source + " has not completed its first snapshot yet: there is no directory to show."
	case errors.Is(err, replay.ErrBeforeBaseline):
		d.Err = "Nothing is known about " + d.Source + " before its first complete snapshot; pick a later time."
	case err != nil:
		s.cfg.Log.Warn("console: directory as of", "source", d.Source, "err", err)
		d.Err = "The directory could not be rebuilt; the console's log says why."
	}
	d.Total = len(users)
	d.CSV = "/asof.csv?" + url.Values{"source": {d.Source}, "at": {d.AtText}}.Encode()
	return d, users
}

func (s *Server) asOf(w http.ResponseWriter, r *http.Request) {
	d, users := s.asOfData(r)
	d.Pages = max(1, (len(users)+asOfPage-1)/asOfPage)
	d.Page = min(intParam(r, "page", 1), d.Pages)
	lo := (d.Page - 1) * asOfPage
	d.Users = users[lo:min(lo+asOfPage, len(users))]
	link := func(p int) string {
		return "/asof?" + url.Values{"source": {d.Source}, "at": {d.AtText}, "page": {itoa(p)}}.Encode()
	}
	if d.Page > 1 {
		d.PrevURL = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = link(d.Page + 1)
	}
	status := http.StatusOK
	if d.Err != "" {
		status = http.StatusBadRequest
	}
	s.render(w, "asof.html", status, s.page(r, "asof", "Directory as of a time", d))
}

// asOfCSV downloads the whole directory as of the time, one user a row.
func (s *Server) asOfCSV(w http.ResponseWriter, r *http.Request) {
	d, users := s.asOfData(r)
	if d.Err != "" {
		http.Error(w, d.Err, http.StatusBadRequest)
		return
	}
	name := d.Source + "-" + d.At.Format("20060102T150405Z") + ".csv"
	if d.Skipped > 0 {
		// A CSV has no place for a note that is not a row; a header says
		// it to whoever looks, and the log says it too.
		w.Header().Set("X-Rollcall-Skipped-Messages", itoa(d.Skipped))
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"source", "id", "email", "userName", "firstName", "lastName", "status", "role", "organizationId", "clientUserId"})
	for _, u := range users {
		_ = cw.Write([]string{u.Source, cell(u.ID), cell(u.Email), cell(u.UserName), cell(u.FirstName), cell(u.LastName),
			cell(strings.ToLower(u.Status)), cell(u.Role), cell(u.OrganizationID), cell(u.ClientUserID)})
	}
	cw.Flush()
}

// cell keeps a spreadsheet from running a value as a formula: one that
// begins with = + - @ (or a tab or carriage return) gets a leading '.
func cell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// dirCache is how long a rebuilt directory serves the pages of its
// listing and its CSV: a rebuild reads the source's whole trail.
const dirCache = time.Minute

// dirEntry is the last directory rebuilt.
type dirEntry struct {
	source string
	at     time.Time
	made   time.Time
	users  []events.User
	stats  replay.DirectoryStats
	err    error // nil, or wrapping replay.ErrUndecodable
}

// directory is replay.DirectoryWithStats, the last answer kept for
// dirCache so that turning its pages does not rebuild it each time. A
// time in the past gives the same answer whenever it is asked; one within
// the skew of now may still gain events, which the short life of the
// entry allows for. Messages that are not events are skipped, logged when
// the directory is rebuilt, and returned as an error wrapping
// replay.ErrUndecodable with the users.
func (s *Server) directory(ctx context.Context, source string, at time.Time) ([]events.User, replay.DirectoryStats, error) {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	if c := s.dir; c != nil && c.source == source && c.at.Equal(at) && time.Since(c.made) < dirCache {
		return c.users, c.stats, c.err
	}
	users, stats, err := replay.DirectoryWithStats(ctx, s.cfg.JS, source, at)
	if errors.Is(err, replay.ErrUndecodable) {
		s.cfg.Log.Warn("console: directory as of: skipped messages that are not rollcall events", "source", source, "at", at, "skipped", stats.Undecodable, "err", err)
	} else if err != nil {
		return nil, stats, err
	}
	s.dir = &dirEntry{source: source, at: at, made: time.Now(), users: users, stats: stats, err: err}
	return users, stats, err
}

// seqs lists the stream sequences of skipped messages for the page.
func seqs(st replay.DirectoryStats) string {
	parts := make([]string, len(st.UndecodableSeqs))
	for i, q := range st.UndecodableSeqs {
		parts[i] = strconv.FormatUint(q, 10)
	}
	out := strings.Join(parts, ", ")
	if st.Undecodable > len(st.UndecodableSeqs) {
		out += ", …"
	}
	return out
}
