package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/pkg/events"
)

// review18DeadLetter stores a dead letter of e for sink as the notifier
// writes it.
func review18DeadLetter(t *testing.T, js jetstream.JetStream, sink string, e events.Event) {
	t.Helper()
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(notifier.DeadLetter{Sink: sink, Reason: "permanent failure: http status 410", Status: 410, Attempts: 1,
		At: time.Now().UTC(), StreamSeq: 1, EventID: e.ID(), Subject: m.Subject, Headers: m.Header, Data: m.Data})
	if err != nil {
		t.Fatal(err)
	}
	dl := nats.NewMsg(bus.DeadLetterPrefix + sink)
	dl.Data = body
	if _, err := js.PublishMsg(context.Background(), dl); err != nil {
		t.Fatal(err)
	}
}

// slowSender is a sink that takes a while to answer, as a real webhook
// does, and counts what it receives per event id; started is closed when
// the first send begins.
type slowSender struct {
	mu      sync.Mutex
	got     map[string]int
	once    sync.Once
	started chan struct{}
}

func (s *slowSender) Send(ctx context.Context, e events.Event) error {
	s.once.Do(func() { close(s.started) })
	select {
	case <-time.After(700 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.got[e.ID()]++
	s.mu.Unlock()
	return nil
}

// TestReview18DoubleSubmitRedriveSendsOnce: an administrator who clicks
// "Send again" twice (or whose browser resubmits the form) must not have
// the dead letter delivered twice. Both POSTs carry a valid token and come
// from the console's own page.
func TestReview18DoubleSubmitRedriveSendsOnce(t *testing.T) {
	snd := &slowSender{got: map[string]int{}, started: make(chan struct{})}
	var jsRef jetstream.JetStream
	s, js := console(t, Config{Access: Access{Loopback: true}, Sinks: []Sink{{Name: "webhook", Kind: "webhook"}},
		Redrive: func(ctx context.Context, sink, id string) (deadletter.RedriveStats, error) {
			return deadletter.Redrive(ctx, jsRef, map[string]deadletter.Sender{"webhook": snd}, sink, id, io.Discard)
		}})
	jsRef = js
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-7", Email: "dl@example.com", Status: "enabled"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	review18DeadLetter(t, js, "webhook", e)
	h := s.Handler()
	form := url.Values{"sink": {"webhook"}, "id": {e.ID()}, "csrf": {s.csrf.token("local")}}
	var wg sync.WaitGroup
	var codes [2]int32
	for i := range 2 {
		wg.Go(func() {
			r := httptest.NewRequest(http.MethodPost, "/deadletters/redrive", strings.NewReader(form.Encode()))
			r.RemoteAddr = "127.0.0.1:40000"
			r.Host = "127.0.0.1" // a loopback console without login answers only to a loopback host (DNS rebinding)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			atomic.StoreInt32(&codes[i], int32(w.Code))
		})
		if i == 0 {
			// The second click comes while the first redrive is sending.
			select {
			case <-snd.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the first redrive did not reach the sink within 10s")
			}
		}
	}
	wg.Wait()
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if n := snd.got[e.ID()]; n != 1 {
		t.Errorf("the same form submitted twice delivered event %s %d times to the sink (statuses %v), want once", e.ID(), n, codes)
	}
}

// TestReview18FailedLoginTimingDoesNotRevealUsers: a wrong password for a
// user in the htpasswd file costs a bcrypt comparison, a user who is not
// in it is answered at once; the difference tells an attacker on the
// network which user names exist (and lets him spend his guesses on
// them).
func TestReview18FailedLoginTimingDoesNotRevealUsers(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost) // cheap; the ratio is what counts
	if err != nil {
		t.Fatal(err)
	}
	s, _ := console(t, Config{Access: Access{Htpasswd: map[string][]byte{"alice": hash}}})
	h := s.Handler()
	measure := func(user string) time.Duration {
		var ds []time.Duration
		for i := range 5 {
			start := time.Now()
			w := get(t, h, "/search", func(r *http.Request) {
				r.RemoteAddr = "10.9.9.9:5000"
				r.SetBasicAuth(user, "guess"+string(rune('a'+i)))
			})
			ds = append(ds, time.Since(start))
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("%s with a wrong password: status %d", user, w.Code)
			}
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	known, unknown := measure("alice"), measure("mallory")
	t.Logf("failed login, median: known user %v, unknown user %v", known, unknown)
	if unknown*4 < known {
		t.Errorf("a failed login for an unknown user takes %v, for a known user %v: the response time tells which user names exist", unknown, known)
	}
}

// TestReview18UndecodableEventDoesNotBreakAsOf: one message on a source's
// subjects whose data is not a rollcall event's (a bug of an earlier
// release, a hand-published test message) must not take the whole
// directory of that source away: the as-of page and its CSV still list
// the users.
func TestReview18UndecodableEventDoesNotBreakAsOf(t *testing.T) {
	s, js := console(t, Config{Access: Access{Loopback: true}})
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-9", Email: "late@example.com", Status: "enabled"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	m.Data = []byte(`{"user": not json`)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// PublishMsg returned once the stream stored the message: the as-of
	// rebuild reads it.
	h := s.Handler()
	w := get(t, h, "/asof?source=veeam&at=now")
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "u-0") || !strings.Contains(body, "u-1") {
		t.Errorf("as-of page with one undecodable event on the stream: status %d, users u-0/u-1 listed: %v/%v; page error: %q",
			w.Code, strings.Contains(body, "u-0"), strings.Contains(body, "u-1"), review18Excerpt(body, "could not"))
	}
	c := get(t, h, "/asof.csv?source=veeam&at=now")
	if c.Code != http.StatusOK || !strings.Contains(c.Body.String(), "u-1") {
		t.Errorf("as-of CSV with one undecodable event on the stream: status %d: %.200s", c.Code, c.Body.String())
	}
	// The other pages hold.
	for _, target := range []string{"/", "/search?q=u-", "/user?source=veeam&id=u-9", "/user?source=veeam&id=u-1"} {
		if w := get(t, h, target); w.Code != http.StatusOK {
			t.Errorf("%s: status %d", target, w.Code)
		}
	}
}

func review18Excerpt(body, near string) string {
	i := strings.Index(body, near)
	if i < 0 {
		return ""
	}
	return body[max(0, i-80):min(len(body), i+120)]
}

// TestReview18SearchFoldsUnicodeCase: the search is "without regard to
// case"; a Greek name typed in capitals (Σ, whose small forms are σ and,
// at a word's end, ς) must find the user.
func TestReview18SearchFoldsUnicodeCase(t *testing.T) {
	x := NewIndex()
	x.PutUser(events.User{Source: "vpp", ID: "1", FirstName: "Οδυσσεας", LastName: "Παπαδοπουλος", UserName: "papadopoulos"})
	for _, q := range []string{"ΠΑΠΑΔΟΠΟΥΛΟΣ", "παπαδοπουλοσ", "Παπαδοπουλος"} {
		if hits, _ := x.Search(q, 10); len(hits) != 1 {
			t.Errorf("Search(%q): %d hits, want the user Παπαδοπουλος", q, len(hits))
		}
	}
}

// TestReview18ProxyHeaderGivenTwice: a proxy that adds its user header
// (rather than replacing one the client sent) forwards two values, the
// client's first. The console takes the first, so a client names himself
// whoever he likes. A request with the header more than once must be
// refused, not served as the first value.
func TestReview18ProxyHeaderGivenTwice(t *testing.T) {
	proxies, _ := ParseProxies("10.0.0.5")
	s, _ := console(t, Config{Access: Access{ProxyHeader: "X-Forwarded-User", TrustedProxies: proxies}})
	w := get(t, s.Handler(), "/search", func(r *http.Request) {
		r.RemoteAddr = "10.0.0.5:1234"
		r.Header.Add("X-Forwarded-User", "admin")
		r.Header.Add("X-Forwarded-User", "bob")
	})
	if w.Code == http.StatusOK {
		t.Errorf("two X-Forwarded-User values (admin, bob) from the proxy: served (status 200), signed in as %q", review18Excerpt(w.Body.String(), "Signed in as"))
	}
}
