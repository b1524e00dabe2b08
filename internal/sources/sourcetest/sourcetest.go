// Package sourcetest is the conformance suite every directory source runs,
// in the manner of go-cloud's drivertest (and of sinktest for the sinks):
// what SPEC §1 asks of every source is checked once, here, against each
// kind's fake, served over real HTTP.
//
// A kind plugs in with one test file that calls RunConformance with a
// Harness: Start starts the kind's fake (its http.Handler; the suite serves
// it on an httptest server of its own, to time the requests) and returns a
// Fake, a small struct of functions that builds the kind's client against a
// URL and drives the fake: set the directory, make page N misbehave, count
// the list requests.
//
// The checks:
//   - Paging: every user of the directory, each once, over one or many
//     pages (the last one full or not, an empty directory too); as many
//     requests as pages, so that the end was found by the API's own rule,
//     neither too early nor by asking past it; under every listing shape
//     the API allows (Fake.Shapes).
//   - NotTheEnd: a page that only looks like the end (an empty batch, a
//     batch without tokens) is not taken for it (Fake.NotTheEnd).
//   - Endless: a listing that never ends fails instead of looping
//     (Fake.Endless).
//   - Retry: 5xx and 429 answers are retried; Retry-After, in seconds or as
//     an HTTP date, is waited for, never less; retries are bounded.
//   - FailedPage: a page that fails after its retries (or at once) fails
//     the whole run: an error, no users, not complete, no cursor.
//   - Refused: a refused credential gives an error the poller recognises
//     to stop the source (StopsSource() bool), without retrying; transient
//     failures never do.
//   - Decode: a malformed page (cut short, a field of the wrong type,
//     invalid UTF-8) gives a *sources.DecodeError naming the source, the
//     page and, for a field of the wrong type, the field; a page beyond
//     the body limit fails the run.
//   - Cancel: a cancelled context (before the run, while a page hangs,
//     while waiting out a Retry-After) or a deadline ends the run promptly
//     with ctx's error, leaving no goroutine of the client's package behind.
//   - Secrets: no error of any check contains a secret the client was
//     given (Fake.Secrets), not even when the server echoes it.
//   - Transport, Redirect: a server that is gone fails the run; a redirect
//     is not followed (the request carries a credential) and fails the run.
//
// The suite calls the source's listing API in one place, the function
// list; a source API that streams pages changes only that function.
package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources"
)

// Source is the poller's view of a source (poller.Source).
type Source interface {
	Name() string
	Kind() string
	Snapshot(ctx context.Context, req sources.Request) (sources.Snapshot, error)
}

// Harness adapts one source kind to the suite.
type Harness struct {
	// Start returns a new fake of the kind, with an empty directory,
	// serving listings in pages of pageSize users (on the server's side or
	// by the client's page size, as the API has it). The suite serves
	// Fake.Handler on an httptest server and closes it at t's cleanup.
	Start func(t *testing.T, pageSize int) *Fake
}

// Fake drives one fake of a kind.
type Fake struct {
	// Handler is the fake.
	Handler http.Handler
	// NewClient builds a client of the kind whose API is at baseURL,
	// holding the credentials the fake accepts (Secrets), with a body limit
	// of at most 1 MiB (see Fault.Oversize). It must retry
	// fast (a backoff of a few milliseconds) at least 3 times per request,
	// and make no request but list requests when nothing goes wrong (a
	// static token, no service discovery).
	NewClient func(t *testing.T, baseURL string) Source
	// SetUsers replaces the directory with n users and returns their ids
	// (events.User.ID) in any order.
	SetUsers func(n int) []string
	// Inject makes the fake misbehave as f says. For f.BadField it returns
	// the field the client's DecodeError should name.
	Inject func(f Fault) (field string)
	// Requests is how many list requests (pages, retries included) the
	// fake has received.
	Requests func() int
	// Secrets are the credentials NewClient gives the client (a token, an
	// API key, a password, and anything inside them that is a secret of
	// its own). None may appear in an error.
	Secrets []string

	// Shapes are listing shapes the API allows beyond the plain one, by
	// name (VPP: totalBatchCount "0"). Each makes the next listing take
	// that shape; the paging check runs under each. Optional.
	Shapes map[string]func()
	// NotTheEnd are ways a page can look like the last one without being
	// it by the API's rule, by name (VPP: an empty batch, a batch with
	// neither token). Each makes page `page` of the next listing look so;
	// the listing must still hold every user. Optional.
	NotTheEnd map[string]func(page int)
	// Endless, if set, makes the next listing never end (fresh pages
	// forever); the run must fail instead of looping.
	Endless func()
}

// Fault is a misbehaviour of one page of a listing. Set one of Status,
// Truncate, BadField, BadUTF8, Oversize, Hang, Refuse and Echo.
type Fault struct {
	// Page is the 1-based page the fault hits, retries of it included.
	Page int
	// Times is how many requests for the page it hits; 0 means 1.
	Times int
	// Status answers with this HTTP status (and the API's error body, if
	// it has one) ...
	Status int
	// ... and this Retry-After header, when set.
	RetryAfter string
	// Truncate cuts the body of a successful answer.
	Truncate bool
	// BadField serves the page with one field of a user of the wrong JSON
	// type; Inject returns the field's name as the client's DecodeError
	// should give it.
	BadField bool
	// BadUTF8 serves the page with invalid UTF-8 in a string of a user.
	BadUTF8 bool
	// Oversize serves the page padded (with JSON whitespace) beyond the
	// body limit NewClient gives the client.
	Oversize bool
	// Hang holds the answer back until the request is cancelled.
	Hang bool
	// Refuse refuses the credential as the API does (VPP: 9622 invalid
	// token; Veeam: 401 for the API key): an operator must act.
	Refuse bool
	// Echo answers with a permanent error (not retried, not a refused
	// credential) whose message is Echo, as the API quotes a request.
	Echo string
}

// fast is how long the suite waits for what must be prompt.
const fast = 2 * time.Second

// guard bounds every run, so that a client that loops fails its check
// instead of hanging the suite.
const guard = 20 * time.Second

// list runs one full listing of src. It is the one place the suite calls
// the source's listing API: a source API that streams pages changes only
// this function (collect the pages with a sources.Collector into Users).
func list(ctx context.Context, src Source) (sources.Snapshot, error) {
	return src.Snapshot(ctx, sources.Request{Full: true})
}

// RunConformance runs the suite against h.
func RunConformance(t *testing.T, h Harness) {
	t.Helper()
	if h.Start == nil {
		t.Fatal("sourcetest: Harness.Start is nil")
	}
	// The cancellation checks count goroutines: they run first, alone;
	// every other check runs in parallel after them.
	t.Run("Cancel", func(t *testing.T) { testCancel(t, h) })
	t.Run("Paging", func(t *testing.T) { t.Parallel(); testPaging(t, h) })
	t.Run("NotTheEnd", func(t *testing.T) { t.Parallel(); testNotTheEnd(t, h) })
	t.Run("Endless", func(t *testing.T) { t.Parallel(); testEndless(t, h) })
	t.Run("Retry", func(t *testing.T) { t.Parallel(); testRetry(t, h) })
	t.Run("RetryAfter", func(t *testing.T) { t.Parallel(); testRetryAfter(t, h) })
	t.Run("FailedPage", func(t *testing.T) { t.Parallel(); testFailedPage(t, h) })
	t.Run("Refused", func(t *testing.T) { t.Parallel(); testRefused(t, h) })
	t.Run("Decode", func(t *testing.T) { t.Parallel(); testDecode(t, h) })
	t.Run("Secrets", func(t *testing.T) { t.Parallel(); testSecrets(t, h) })
	t.Run("Transport", func(t *testing.T) { t.Parallel(); testTransport(t, h) })
	t.Run("Redirect", func(t *testing.T) { t.Parallel(); testRedirect(t, h) })
}

// hit is one request the suite's server answered.
type hit struct {
	start, end time.Time
	status     int
}

// env is one check's fake, server and client.
type env struct {
	t    *testing.T
	fake *Fake
	srv  *httptest.Server
	src  Source

	mu       sync.Mutex
	hits     []hit
	redirect string // when set, every request is answered 307 to it
}

// setup starts a fake with n users in pages of pageSize and a client of it.
func setup(t *testing.T, h Harness, pageSize, n int) (*env, []string) {
	t.Helper()
	f := h.Start(t, pageSize)
	if f == nil || f.Handler == nil || f.NewClient == nil || f.SetUsers == nil || f.Inject == nil || f.Requests == nil {
		t.Fatal("sourcetest: Start returned a Fake without Handler, NewClient, SetUsers, Inject or Requests")
	}
	if len(f.Secrets) == 0 {
		t.Fatal("sourcetest: Fake.Secrets is empty")
	}
	e := &env{t: t, fake: f}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	ids := f.SetUsers(n)
	if len(ids) != n {
		t.Fatalf("sourcetest: SetUsers(%d) returned %d ids", n, len(ids))
	}
	e.src = f.NewClient(t, e.srv.URL)
	return e, ids
}

func (e *env) serve(w http.ResponseWriter, r *http.Request) {
	rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	e.mu.Lock()
	to := e.redirect
	e.mu.Unlock()
	if to != "" {
		http.Redirect(rec, r, to+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	} else {
		e.fake.Handler.ServeHTTP(rec, r)
	}
	e.mu.Lock()
	e.hits = append(e.hits, hit{start: start, end: time.Now(), status: rec.status})
	e.mu.Unlock()
}

func (e *env) answered() []hit {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.hits)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// run lists the env's source with the guard's deadline and checks that its
// error, if any, holds no secret.
func (e *env) run() (sources.Snapshot, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	snap, err := list(ctx, e.src)
	e.noLeak(err)
	return snap, err
}

// noLeak fails the check when err's text holds a secret.
func (e *env) noLeak(err error) {
	e.t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range e.fake.Secrets {
		if s != "" && strings.Contains(msg, s) {
			e.t.Errorf("error %q contains the secret %q", msg, s)
		}
	}
}

// complete checks a successful full listing of exactly ids.
func (e *env) complete(snap sources.Snapshot, err error, ids []string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("listing failed: %v", err)
	}
	if !snap.Complete {
		e.t.Error("a full listing came back with Complete false")
	}
	got := map[string]int{}
	for _, u := range snap.Users {
		got[u.ID]++
		if u.Source != e.src.Name() {
			e.t.Errorf("user %q has Source %q, want %q", u.ID, u.Source, e.src.Name())
		}
	}
	var missing, doubled []string
	for _, id := range ids {
		switch got[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			doubled = append(doubled, id)
		}
		delete(got, id)
	}
	if len(missing) > 0 || len(doubled) > 0 || len(got) > 0 || len(snap.Users) != len(ids) {
		e.t.Errorf("listing has %d users, want %d: missing %s, more than once %s, not in the directory %d",
			len(snap.Users), len(ids), short(missing), short(doubled), len(got))
	}
}

func short(ids []string) string {
	if len(ids) > 5 {
		return fmt.Sprintf("%q and %d more", ids[:5], len(ids)-5)
	}
	return fmt.Sprintf("%q", ids)
}

// failed checks a run that must have failed as a whole: an error and
// nothing a caller could take for a snapshot.
func (e *env) failed(snap sources.Snapshot, err error) {
	e.t.Helper()
	if err == nil {
		e.t.Fatalf("listing succeeded with %d users (complete %v); want an error", len(snap.Users), snap.Complete)
	}
	if snap.Complete || snap.Cursor != "" || len(snap.Users) > 0 {
		e.t.Errorf("failed listing (%v) returned a snapshot: complete %v, cursor %q, %d users; want none",
			err, snap.Complete, snap.Cursor, len(snap.Users))
	}
}

// stops reports whether err is one the poller takes to stop the source.
func stops(err error) bool {
	var st interface{ StopsSource() bool }
	return errors.As(err, &st) && st.StopsSource()
}

// notStopping checks that a transient failure does not stop the source.
func (e *env) notStopping(err error) {
	e.t.Helper()
	if stops(err) {
		e.t.Errorf("error %q stops the source; only a refused credential may", err)
	}
}

func pages(n, size int) int { return max(1, (n+size-1)/size) }

func testPaging(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name            string
		users, pageSize int
	}{
		{"EmptyDirectory", 0, 3},
		{"OnePage", 2, 3},
		{"OneFullPage", 3, 3},
		{"PartialLastPage", 14, 3},
		{"FullLastPage", 15, 3},
		{"ManyPages", 120, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, ids := setup(t, h, tc.pageSize, tc.users)
			snap, err := e.run()
			e.complete(snap, err, ids)
			want := pages(tc.users, tc.pageSize)
			if got := e.fake.Requests(); got != want {
				t.Errorf("%d list requests for %d users in pages of %d, want %d (one per page, none past the last)",
					got, tc.users, tc.pageSize, want)
			}
			if snap.Pages != want {
				t.Errorf("Snapshot.Pages = %d, want %d", snap.Pages, want)
			}
		})
	}
	for name := range h.Start(t, 1).Shapes {
		for _, n := range []int{0, 7, 9} {
			t.Run(fmt.Sprintf("Shape/%s/%d", name, n), func(t *testing.T) {
				t.Parallel()
				e, ids := setup(t, h, 3, n)
				e.fake.Shapes[name]()
				snap, err := e.run()
				e.complete(snap, err, ids)
				if got := e.fake.Requests(); snap.Pages != got {
					t.Errorf("Snapshot.Pages = %d, but the fake served %d list requests", snap.Pages, got)
				}
			})
		}
	}
}

func testNotTheEnd(t *testing.T, h Harness) {
	ways := h.Start(t, 1).NotTheEnd
	if len(ways) == 0 {
		t.Skip("the kind names no page that looks like the end without being it")
	}
	for name := range ways {
		for _, page := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/page%d", name, page), func(t *testing.T) {
				t.Parallel()
				e, ids := setup(t, h, 2, 5) // 3 pages
				e.fake.NotTheEnd[name](page)
				snap, err := e.run()
				e.complete(snap, err, ids)
			})
		}
	}
}

func testEndless(t *testing.T, h Harness) {
	if h.Start(t, 1).Endless == nil {
		t.Skip("the kind's fake has no endless listing")
	}
	e, _ := setup(t, h, 2, 5)
	e.fake.Endless()
	snap, err := e.run()
	e.failed(snap, err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the endless listing ran until the suite's %v guard: %v", guard, err)
	}
	e.notStopping(err)
}

func testRetry(t *testing.T, h Harness) {
	for _, status := range []int{429, 500, 502, 503, 520} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			e, ids := setup(t, h, 2, 5) // 3 pages
			e.fake.Inject(Fault{Page: 2, Times: 2, Status: status})
			snap, err := e.run()
			e.complete(snap, err, ids)
			if got, want := e.fake.Requests(), 3+2; got != want {
				t.Errorf("%d list requests, want %d (3 pages, page 2 twice more)", got, want)
			}
		})
	}
	t.Run("Bounded", func(t *testing.T) {
		t.Parallel()
		e, _ := setup(t, h, 2, 5)
		e.fake.Inject(Fault{Page: 2, Times: 1 << 20, Status: 503})
		snap, err := e.run()
		e.failed(snap, err)
		e.notStopping(err)
		if got := e.fake.Requests(); got > 1+100 {
			t.Errorf("%d list requests for a page that always fails; retries must be bounded", got)
		}
	})
}

func testRetryAfter(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name   string
		status int
		value  func(now time.Time) (header string, notBefore time.Time)
	}{
		{"Seconds503", 503, func(now time.Time) (string, time.Time) { return "1", time.Time{} }},
		{"Seconds429", 429, func(now time.Time) (string, time.Time) { return "1", time.Time{} }},
		{"HTTPDate503", 503, func(now time.Time) (string, time.Time) {
			// Whole seconds: the date is at least one second ahead.
			at := now.Add(2 * time.Second).Truncate(time.Second)
			return at.UTC().Format(http.TimeFormat), at
		}},
		{"HTTPDate429", 429, func(now time.Time) (string, time.Time) {
			at := now.Add(2 * time.Second).Truncate(time.Second)
			return at.UTC().Format(http.TimeFormat), at
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, ids := setup(t, h, 2, 5)
			header, notBefore := tc.value(time.Now())
			e.fake.Inject(Fault{Page: 2, Status: tc.status, RetryAfter: header})
			snap, err := e.run()
			e.complete(snap, err, ids)
			hits := e.answered()
			i := slices.IndexFunc(hits, func(h hit) bool { return h.status == tc.status })
			if i < 0 || i+1 >= len(hits) {
				t.Fatalf("no retry after the %d answer (%d requests)", tc.status, len(hits))
			}
			// A little slack for the clocks of client and server reading
			// the same wall clock at slightly different moments.
			const slack = 20 * time.Millisecond
			retry := hits[i+1].start
			if notBefore.IsZero() {
				if waited := retry.Sub(hits[i].end); waited < time.Second-slack {
					t.Errorf("retried %v after Retry-After: 1; want at least 1s", waited.Round(time.Millisecond))
				}
			} else if retry.Before(notBefore.Add(-slack)) {
				t.Errorf("retried at %v, before Retry-After: %s", retry.Format(time.RFC3339Nano), header)
			}
		})
	}
}

// testFailedPage fails the last of three pages in each way a page can
// fail for good: the run must fail as a whole.
func testFailedPage(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name  string
		fault Fault
	}{
		{"RetriesExhausted", Fault{Status: 503, Times: 1 << 20}},
		{"Permanent400", Fault{Status: 400}},
		{"Truncated", Fault{Truncate: true}},
		{"BadField", Fault{BadField: true}},
		{"BadUTF8", Fault{BadUTF8: true}},
		{"Oversize", Fault{Oversize: true}},
		{"Refused", Fault{Refuse: true}},
		{"Echo", Fault{Echo: "the request was refused"}},
	} {
		for _, page := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/page%d", tc.name, page), func(t *testing.T) {
				t.Parallel()
				e, _ := setup(t, h, 2, 5)
				f := tc.fault
				f.Page = page
				e.fake.Inject(f)
				snap, err := e.run()
				e.failed(snap, err)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("the run ended only at the suite's %v guard: %v", guard, err)
				}
			})
		}
	}
}

func testRefused(t *testing.T, h Harness) {
	for _, page := range []int{1, 2} {
		t.Run(fmt.Sprintf("page%d", page), func(t *testing.T) {
			t.Parallel()
			e, _ := setup(t, h, 2, 5)
			e.fake.Inject(Fault{Page: page, Refuse: true, Times: 1 << 20})
			snap, err := e.run()
			e.failed(snap, err)
			if !stops(err) {
				t.Errorf("refused credential: error %q does not stop the source (no StopsSource() true in its chain)", err)
			}
			// Asking again with a credential the API refused achieves
			// nothing and may lock the account.
			if got := e.fake.Requests(); got > page+1 {
				t.Errorf("%d list requests; the refused page %d was retried %d times", got, page, got-page)
			}
		})
	}
	// The converse: what passes by itself must not stop the source.
	for _, f := range []Fault{{Status: 503, Times: 1 << 20}, {Status: 429, Times: 1 << 20}, {Truncate: true}} {
		t.Run(fmt.Sprintf("NotStopping/%d/truncate=%v", f.Status, f.Truncate), func(t *testing.T) {
			t.Parallel()
			e, _ := setup(t, h, 2, 5)
			f.Page = 2
			e.fake.Inject(f)
			snap, err := e.run()
			e.failed(snap, err)
			e.notStopping(err)
		})
	}
}

func testDecode(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name  string
		fault Fault
	}{
		{"Truncated", Fault{Truncate: true}},
		{"BadField", Fault{BadField: true}},
		{"BadUTF8", Fault{BadUTF8: true}},
	} {
		for _, page := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/page%d", tc.name, page), func(t *testing.T) {
				t.Parallel()
				e, _ := setup(t, h, 2, 5)
				f := tc.fault
				f.Page = page
				field := e.fake.Inject(f)
				snap, err := e.run()
				e.failed(snap, err)
				e.notStopping(err)
				var de *sources.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %q (%T) is not a *sources.DecodeError", err, err)
				}
				if de.Source != e.src.Name() {
					t.Errorf("DecodeError.Source = %q, want %q", de.Source, e.src.Name())
				}
				if de.Page != page {
					t.Errorf("DecodeError.Page = %d, want %d", de.Page, page)
				}
				if f.BadField && de.Field != field {
					t.Errorf("DecodeError.Field = %q, want %q", de.Field, field)
				}
				if msg := err.Error(); !strings.Contains(msg, e.src.Name()) || !strings.Contains(msg, fmt.Sprintf("page %d", page)) {
					t.Errorf("error %q does not name source %q and page %d", msg, e.src.Name(), page)
				}
			})
		}
	}
}

func testSecrets(t *testing.T, h Harness) {
	secrets := h.Start(t, 1).Secrets
	for i, s := range secrets {
		for _, spelling := range []struct{ name, text string }{
			{"Plain", s},
			{"QueryEscaped", url.QueryEscape(s)},
			{"InQuotes", fmt.Sprintf("token %q is not valid", s)},
		} {
			t.Run(fmt.Sprintf("Echo%d/%s", i, spelling.name), func(t *testing.T) {
				t.Parallel()
				e, _ := setup(t, h, 2, 5)
				e.fake.Inject(Fault{Page: 2, Echo: "bad request: " + spelling.text})
				snap, err := e.run() // run checks the error for secrets
				e.failed(snap, err)
				if spelling.text != s && strings.Contains(err.Error(), spelling.text) {
					t.Errorf("error %q contains the secret as the server spelled it, %q", err, spelling.text)
				}
			})
		}
	}
}

func testTransport(t *testing.T, h Harness) {
	e, _ := setup(t, h, 2, 5)
	e.srv.Close()
	start := time.Now()
	snap, err := e.run()
	e.failed(snap, err)
	e.notStopping(err)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a server that is gone took %v to fail the run", d.Round(time.Millisecond))
	}
	if err != nil && strings.Contains(err.Error(), e.srv.URL+"/") {
		t.Errorf("error %q quotes the request URL; its path or query may carry a secret", err)
	}
}

func testRedirect(t *testing.T, h Harness) {
	trap := struct {
		sync.Mutex
		n int
	}{}
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		trap.Lock()
		trap.n++
		trap.Unlock()
		http.Error(w, "should not be here", http.StatusTeapot)
	}))
	t.Cleanup(elsewhere.Close)
	e, _ := setup(t, h, 2, 5)
	e.mu.Lock()
	e.redirect = elsewhere.URL
	e.mu.Unlock()
	snap, err := e.run()
	e.failed(snap, err)
	trap.Lock()
	n := trap.n
	trap.Unlock()
	if n > 0 {
		t.Errorf("the client followed a redirect with its credentials %d times", n)
	}
	host := strings.TrimPrefix(elsewhere.URL, "http://")
	if err != nil && !strings.Contains(err.Error(), host) {
		t.Errorf("error %q does not name the redirect's target host %s", err, host)
	}
}

// testCancel runs alone, before the other checks: it looks for goroutines
// left behind.
func testCancel(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name  string
		fault Fault
	}{
		{"HangingPage", Fault{Page: 2, Hang: true}},
		{"RetryAfterWait", Fault{Page: 2, Status: 503, RetryAfter: "3600", Times: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := setup(t, h, 2, 5)
			e.fake.Inject(tc.fault)
			pkg := pkgOf(e.src)
			before := goroutines(pkg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				snap sources.Snapshot
				err  error
			}
			done := make(chan result, 1)
			go func() {
				snap, err := list(ctx, e.src)
				done <- result{snap, err}
			}()
			// Cancel once page 2 has been asked for (and, for the wait,
			// answered).
			until(t, func() bool {
				for _, hit := range e.answered() {
					if tc.fault.Status != 0 && hit.status == tc.fault.Status {
						return true
					}
				}
				return tc.fault.Hang && e.fake.Requests() >= 2
			}, "page 2 to be requested")
			cancel()
			var r result
			select {
			case r = <-done:
			case <-time.After(fast):
				t.Fatalf("the run did not end within %v of its context being cancelled", fast)
			}
			e.noLeak(r.err)
			e.failed(r.snap, r.err)
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("error %q does not wrap context.Canceled", r.err)
			}
			e.notStopping(r.err)
			noneLeft(t, pkg, before)
		})
	}
	t.Run("Deadline", func(t *testing.T) {
		e, _ := setup(t, h, 2, 5)
		e.fake.Inject(Fault{Page: 2, Hang: true})
		pkg := pkgOf(e.src)
		before := goroutines(pkg)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		snap, err := list(ctx, e.src)
		if d := time.Since(start); d > 300*time.Millisecond+fast {
			t.Errorf("the run took %v with a 300ms deadline", d.Round(time.Millisecond))
		}
		e.noLeak(err)
		e.failed(snap, err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %q does not wrap context.DeadlineExceeded", err)
		}
		e.notStopping(err)
		noneLeft(t, pkg, before)
	})
	t.Run("Before", func(t *testing.T) {
		e, _ := setup(t, h, 2, 5)
		pkg := pkgOf(e.src)
		before := goroutines(pkg)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		snap, err := list(ctx, e.src)
		e.noLeak(err)
		e.failed(snap, err)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %q does not wrap context.Canceled", err)
		}
		if n := e.fake.Requests(); n > 1 {
			t.Errorf("%d list requests with a cancelled context", n)
		}
		noneLeft(t, pkg, before)
	})
}

// until polls cond until it holds, failing the check after a while.
func until(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// pkgOf is the import path of src's concrete type: the client's package,
// whose frames a leftover goroutine would show.
func pkgOf(src Source) string {
	rt := reflect.TypeOf(src)
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	return rt.PkgPath()
}

// goroutines returns the stacks of the goroutines running code of pkg, by
// goroutine id, the caller's own excepted.
func goroutines(pkg string) map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller
			continue
		}
		id, _, _ := strings.Cut(g, " [")
		// A frame of pkg reads "\n<pkg>.Func(" or "\n<pkg>.(*T).Method(";
		// sub-packages do not match. A source of an external test package
		// (a wrapper) counts for the package it tests too.
		if strings.Contains(g, "\n"+pkg+".") || strings.Contains(g, "\n"+strings.TrimSuffix(pkg, "_test")+".") {
			out[id] = g
		}
	}
	return out
}

// noneLeft waits (briefly) for the goroutines of pkg that were not there
// before to end, and fails the check if some remain.
func noneLeft(t *testing.T, pkg string, before map[string]string) {
	t.Helper()
	if pkg == "" {
		return
	}
	deadline := time.Now().Add(fast)
	for {
		var left []string
		for id, stack := range goroutines(pkg) {
			if _, ok := before[id]; !ok {
				left = append(left, stack)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutine(s) of %s left behind after the run ended:\n%s", len(left), pkg, strings.Join(left, "\n\n"))
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
