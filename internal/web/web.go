// Package web is the audit console (SPEC §3.5): an HTML view of what
// rollcall knows and did, for an administrator who has never seen NATS.
// It shows each source and sink at a glance with a chart of events per
// day, finds a person by id, e-mail address or user name, shows a
// person's timeline with what each sink did with each event, the
// directory as it was at a given time (with a CSV download), and the dead
// letters, which it can redrive.
//
// Pages are server-rendered (html/template, which escapes every value from
// a directory) and work without JavaScript; one small script refreshes
// the overview while it is open. Every asset is embedded in the binary.
// It reads NATS with whatever credentials it is given and is meant to run
// with the read-only replay user; redriving needs a Redrive function that
// holds the sinks and credentials allowed to send.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/redact"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// RedriveFunc sends the dead letters of sink again (those of event id
// only, when id is not ""), as `notifier deadletter redrive` does,
// refusals included (a sink whose endpoint moved).
type RedriveFunc func(ctx context.Context, sink, id string) (deadletter.RedriveStats, error)

// Config is what the console needs.
type Config struct {
	JS     jetstream.JetStream
	Sinks  []Sink
	Access Access
	// Redrive, nil when the console may not redrive (its credentials are
	// read-only): the page then says how to redrive from the command line.
	Redrive RedriveFunc
	Log     *slog.Logger
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
	// Refresh is how often the overview refreshes itself; default 10s.
	Refresh time.Duration
}

// Server is the console.
type Server struct {
	cfg  Config
	idx  *Index
	tmpl map[string]*template.Template
	auth *authenticator
	csrf csrf

	// redriving holds, per sink, the redrive under way: one at a time,
	// so that a second click (or a resubmitted form) waits and then finds
	// the dead letter already sent instead of sending it again.
	redriveMu sync.Mutex
	redriving map[string]*sinkLock

	deadMu   sync.Mutex
	deadList []deadletter.Entry // the last listing, nil when there is none
	deadAt   time.Time

	dirMu sync.Mutex
	dir   *dirEntry

	kvMu  sync.Mutex
	kv    jetstream.KeyValue // rollcall_sources, once opened
	kvErr error
	kvAt  time.Time
}

// New builds the console; Run feeds its index and serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Second
	}
	if err := cfg.Access.Check(); err != nil {
		return nil, err
	}
	t, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(cfg.Access)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, idx: NewIndex(), tmpl: t, auth: auth, csrf: newCSRF(), redriving: map[string]*sinkLock{}}, nil
}

// Index is the console's search index (the bench measures it).
func (s *Server) Index() *Index { return s.idx }

// Run feeds the index from NATS and serves ln until ctx ends; it returns
// once every goroutine it started has stopped.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { feedUsers(ctx, s.cfg.JS, s.idx, s.cfg.Log) })
	wg.Go(func() { feedEvents(ctx, s.cfg.JS, s.idx, s.cfg.Log) })
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn)}
	wg.Go(func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	})
	err := srv.Serve(ln)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("console: %w", err)
}

// Handler serves the console's pages, behind the access check and the
// cross-origin check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /live/overview", s.overviewFragment)
	mux.HandleFunc("GET /search", s.search)
	mux.HandleFunc("GET /user", s.user)
	mux.HandleFunc("GET /event/{id}", s.event)
	mux.HandleFunc("GET /asof", s.asOf)
	mux.HandleFunc("GET /asof.csv", s.asOfCSV)
	mux.HandleFunc("GET /deadletters", s.deadLettersPage)
	mux.HandleFunc("POST /deadletters/redrive", s.redrive)
	cop := http.NewCrossOriginProtection()
	return s.secure(cop.Handler(mux))
}

// secure adds the access check and headers that keep pages from being
// framed, sniffed or given scripts from elsewhere.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if !s.auth.a.LoginConfigured() && !loopbackHost(r.Host) {
			// Without a login, whoever reaches the console is trusted
			// for being on this machine; a web page the administrator
			// visits reaches it too by DNS rebinding (its own name made
			// to resolve to 127.0.0.1), and the browser then reads the
			// pages as that site's. Only the Host header tells.
			s.cfg.Log.Warn("console: refused a request for a host name that is not loopback; without a login the console answers only to localhost, 127.0.0.1 or ::1 (configure a login to serve it under another name)",
				"host", redact.Excerpt(r.Host, 100), "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "refused: this console has no login and answers only to localhost, 127.0.0.1 or [::1]; open it under one of those names, or configure a login (WEB_HTPASSWD or a trusted proxy) to serve it under another", http.StatusMisdirectedRequest)
			return
		}
		user, err := s.auth.user(r)
		if errors.Is(err, errHeaderTwice) {
			// The values are the client's to choose: the log names the
			// header and how many there were, not what they say.
			s.cfg.Log.Warn("console: refused a request whose trusted proxy user header names more than one user; make the proxy replace the header instead of adding to it",
				"header", s.auth.a.ProxyHeader, "values", len(r.Header.Values(s.auth.a.ProxyHeader)), "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "refused: the "+s.auth.a.ProxyHeader+" header from the proxy names more than one user (it was sent more than once, or holds a comma), so who you are is not known; the proxy must replace that header, not add to it", http.StatusForbidden)
			return
		}
		if user == "" {
			h.Set("WWW-Authenticate", `Basic realm="rollcall console", charset="UTF-8"`)
			http.Error(w, "log in to see the rollcall console", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userCtx{}, user)))
	})
}

type userCtx struct{}

func userOf(r *http.Request) string {
	u, _ := r.Context().Value(userCtx{}).(string)
	return u
}

// loopbackHost reports whether host (a Host header: a name or address,
// with or without a port) names this machine: localhost, or a loopback
// address. An empty Host (HTTP/1.0, which no browser sends) is let in.
func loopbackHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	host = strings.TrimSuffix(host, ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
