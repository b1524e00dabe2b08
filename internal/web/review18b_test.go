package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestReview18bLoopbackRefusesForeignHost: a console on loopback with no
// login trusts whoever reaches 127.0.0.1, but a web page the
// administrator visits can reach it too, by DNS rebinding: evil.example
// resolves first to the attacker's server, then to 127.0.0.1, and the
// browser then treats the console as evil.example's own origin: the
// page reads every person's history and the redrive form's CSRF token,
// and the cross-origin check sees a same-origin POST. The Host header
// is all that tells such a request apart; without a login the console
// must answer only to a loopback host name.
func TestReview18bLoopbackRefusesForeignHost(t *testing.T) {
	s, _ := console(t, Config{Access: Access{Loopback: true}})
	h := s.Handler()
	for _, host := range []string{"evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example:80"} {
		w := get(t, h, "/search?q=u-", func(r *http.Request) { r.Host = host })
		if w.Code == http.StatusOK || strings.Contains(w.Body.String(), "u-1") {
			t.Errorf("Host %s on a loopback console without login: status %d, the page is served", host, w.Code)
		}
	}
	for _, host := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost", "127.0.0.1", "LOCALHOST:80"} {
		if w := get(t, h, "/search?q=u-", func(r *http.Request) { r.Host = host }); w.Code != http.StatusOK {
			t.Errorf("Host %s: status %d, want 200", host, w.Code)
		}
	}
}

// TestReview18bSearchNormalises: a name stored decomposed (e + U+0301,
// as macOS and Apple's services often send it) is not found by the same
// name typed composed, nor the other way; and a Turkish capital İ folds
// to i + U+0307, so "ilknur" does not find "İLKNUR". An administrator
// types the name as they see it.
func TestReview18bSearchNormalises(t *testing.T) {
	x := NewIndex()
	x.PutUser(events.User{Source: "vpp", ID: "1", FirstName: "Jose\u0301", LastName: "Garci\u0301a"}) // decomposed
	x.PutUser(events.User{Source: "vpp", ID: "2", FirstName: "Ren\u00e9", LastName: "Dupont"})        // composed
	x.PutUser(events.User{Source: "vpp", ID: "3", UserName: "İLKNUR", FirstName: "İlknur"})
	for _, c := range []struct{ q, want string }{
		{"Jos\u00e9", "vpp/1"},
		{"garc\u00eda", "vpp/1"},
		{"Rene\u0301", "vpp/2"},
		{"ilknur", "vpp/3"},
		{"İlknur", "vpp/3"},
	} {
		hits, _ := x.Search(c.q, 10)
		var got []string
		for _, h := range hits {
			got = append(got, h.User.Source+"/"+h.User.ID)
		}
		if !slices.Equal(got, []string{c.want}) {
			t.Errorf("Search(%q) = %v, want [%s]", c.q, got, c.want)
		}
	}
}

// TestReview18bSearchIgnoresAccents: an administrator types names on a
// keyboard without accents ("jose garcia", "muller"), and a directory
// holds them with (José García, Müller), composed or not. Before the
// normal form C fix a decomposed José was found by "jose" and a composed
// one was not; neither should depend on how the name was stored. Marks
// are dropped only after Latin, Greek and Cyrillic letters: kana's voicing
// marks and Indic vowel signs change the letter.
func TestReview18bSearchIgnoresAccents(t *testing.T) {
	x := NewIndex()
	x.PutUser(events.User{Source: "vpp", ID: "1", FirstName: "Jose\u0301", LastName: "Garci\u0301a"}) // decomposed
	x.PutUser(events.User{Source: "vpp", ID: "2", FirstName: "Jos\u00e9", LastName: "Garc\u00eda"})   // composed
	x.PutUser(events.User{Source: "vpp", ID: "3", LastName: "Müller", Email: "mueller@schule.example"})
	x.PutUser(events.User{Source: "vpp", ID: "4", LastName: "Παπαδόπουλος"})
	x.PutUser(events.User{Source: "vpp", ID: "5", LastName: "が"})
	for _, c := range []struct {
		q    string
		want []string
	}{
		{"jose garcia", []string{"vpp/1", "vpp/2"}},
		{"JOSÉ", []string{"vpp/1", "vpp/2"}},
		{"muller", []string{"vpp/3"}},
		{"ΠΑΠΑΔΟΠΟΥΛΟΣ", []string{"vpp/4"}},
		{"か", nil}, // ka is not ga
	} {
		hits, _ := x.Search(c.q, 10)
		var got []string
		for _, h := range hits {
			got = append(got, h.User.Source+"/"+h.User.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Search(%q) = %v, want %v", c.q, got, c.want)
		}
	}
}

// heldSender is a sink whose sends go out at once but are answered only
// when release is closed; started is closed when the first send begins.
type heldSender struct {
	mu      sync.Mutex
	got     map[string]int
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (s *heldSender) Send(ctx context.Context, e events.Event) error {
	s.mu.Lock()
	s.got[e.ID()]++
	s.mu.Unlock()
	s.once.Do(func() { close(s.started) })
	<-s.release // the webhook has the event; its answer is on the way
	return nil
}

// TestReview18bAbortedRedriveSendsOnce: a browser aborts the first POST
// when the form is sent again (a second click, a reload), and a tab can be
// closed while a redrive runs. The request's context then ends; the
// redrive, bound to it, stops after the sink was sent the dead letter but
// before removing it, and the next redrive (the second click, waiting for
// the first) sends it again. Once started, a redrive must run to its end.
func TestReview18bAbortedRedriveSendsOnce(t *testing.T) {
	snd := &heldSender{got: map[string]int{}, started: make(chan struct{}), release: make(chan struct{})}
	var jsRef jetstream.JetStream
	s, js := console(t, Config{Access: Access{Loopback: true}, Sinks: []Sink{{Name: "webhook", Kind: "webhook"}},
		Redrive: func(ctx context.Context, sink, id string) (deadletter.RedriveStats, error) {
			return deadletter.Redrive(ctx, jsRef, map[string]deadletter.Sender{"webhook": snd}, sink, id, io.Discard)
		}})
	jsRef = js
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-8", Email: "dl8@example.com", Status: "enabled"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	review18DeadLetter(t, js, "webhook", e)
	h := s.Handler()
	form := url.Values{"sink": {"webhook"}, "id": {e.ID()}, "csrf": {s.csrf.token("local")}}
	post := func(ctx context.Context) int {
		r := httptest.NewRequest(http.MethodPost, "/deadletters/redrive", strings.NewReader(form.Encode())).WithContext(ctx)
		r.RemoteAddr, r.Host = "127.0.0.1:40000", "127.0.0.1"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	first, abort := context.WithCancel(context.Background())
	defer abort()
	var wg sync.WaitGroup
	var codes [2]int
	wg.Go(func() { codes[0] = post(first) })
	select {
	case <-snd.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first redrive did not reach the sink within 10s")
	}
	abort() // the browser drops the first request for the second
	wg.Go(func() { codes[1] = post(context.Background()) })
	close(snd.release)
	wg.Wait()
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if n := snd.got[e.ID()]; n != 1 {
		t.Errorf("a redrive whose request was aborted, then the form sent again: event %s delivered %d times (statuses %v), want once", e.ID(), n, codes)
	}
}

// TestReview18bHtpasswdRefusesWhatCannotLogIn: a line a login can never
// pass, and a user named twice (which line counts?), are refused at
// start, naming the line, as other malformed lines are: an administrator
// who added a user finds out then, not at the login prompt.
func TestReview18bHtpasswdRefusesWhatCannotLogIn(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := string(hash)
	for name, body := range map[string]string{
		"a hash with a field after it": "alice:" + h + ":Alice Example\n",
		"a truncated hash":             "alice:" + h[:len(h)-5] + "\n",
		"a user named twice":           "alice:" + h + "\nbob:" + h + "\nalice:" + h + "\n",
	} {
		path := t.TempDir() + "/htpasswd"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if users, err := LoadHtpasswd(path); err == nil {
			t.Errorf("%s: loaded %d users, no error", name, len(users))
		}
	}
	// What a login passes is still read: CRLF lines, comments, blanks.
	path := t.TempDir() + "/htpasswd"
	if err := os.WriteFile(path, []byte("# users\r\n\r\nalice:"+h+"\r\nbob:"+h+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if users, err := LoadHtpasswd(path); err != nil || len(users) != 2 || bcrypt.CompareHashAndPassword(users["alice"], []byte("pw")) != nil {
		t.Errorf("a good file: %d users, %v", len(users), err)
	}
}

// TestReview18bAsOfYearOne: the first instant of year 1 is Go's zero
// time, which the directory rebuild reads as "now": asked for the
// directory as of 0001-01-01, the page showed today's users "as of
// never" (and the CSV them), where any other time before the first
// snapshot says nothing is known then.
func TestReview18bAsOfYearOne(t *testing.T) {
	s, _ := console(t, Config{Access: Access{Loopback: true}})
	h := s.Handler()
	for _, q := range []string{"at=0001-01-01", "at=0001-01-01T00:00:00Z", "date=0001-01-01", "date=0001-01-01&time=00:00"} {
		w := get(t, h, "/asof?source=veeam&"+q)
		if w.Code == http.StatusOK || strings.Contains(w.Body.String(), "u-1") {
			t.Errorf("/asof %s: status %d, lists the users of today", q, w.Code)
		}
		if c := get(t, h, "/asof.csv?source=veeam&"+q); c.Code == http.StatusOK {
			t.Errorf("/asof.csv %s: status %d: %.200s", q, c.Code, c.Body.String())
		}
	}
	if w := get(t, h, "/asof?source=veeam&at=0001-01-02"); w.Code == http.StatusOK {
		t.Errorf("/asof at=0001-01-02: status %d", w.Code)
	}
}

// TestReview18bAsOfSkippedOnEveryPage: with a message skipped, every page
// of a long directory says so (not only the first), the pages together
// list every user once, and the CSV has them all and the count.
func TestReview18bAsOfSkippedOnEveryPage(t *testing.T) {
	s, js := console(t, Config{Access: Access{Loopback: true}})
	ctx := context.Background()
	var users []events.User
	for i := range 2*asOfPage + 3 {
		users = append(users, events.User{Source: "big", SourceKind: events.KindVeeam, ID: "b-" + itoa(1000+i), Status: "enabled"})
	}
	baseline(ctx, t, js, "big", users...)
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: events.User{Source: "big", SourceKind: events.KindVeeam, ID: "b-x", Status: "enabled"}, Reason: events.ReasonNew, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	m.Data = []byte(`not an event`)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	first := get(t, h, "/asof?source=big&at=now")
	at := ""
	if i := strings.Index(first.Body.String(), `datetime="`); i >= 0 {
		at = first.Body.String()[i+len(`datetime="`):]
		at = at[:strings.IndexByte(at, '"')]
	}
	seen := map[string]int{}
	for p := 1; p <= 3; p++ {
		w := get(t, h, "/asof?"+url.Values{"source": {"big"}, "at": {at}, "page": {itoa(p)}}.Encode())
		body := w.Body.String()
		if w.Code != http.StatusOK || !strings.Contains(body, "skipped") && !strings.Contains(body, "Skipped") {
			t.Errorf("page %d: status %d, says nothing of the skipped message", p, w.Code)
		}
		for _, u := range users {
			if strings.Contains(body, ">"+u.ID+"<") {
				seen[u.ID]++
			}
		}
	}
	for _, u := range users {
		if seen[u.ID] != 1 {
			t.Errorf("%s on %d pages, want 1", u.ID, seen[u.ID])
		}
	}
	c := get(t, h, "/asof.csv?"+url.Values{"source": {"big"}, "at": {at}}.Encode())
	if n := strings.Count(c.Body.String(), "\nbig,"); n != len(users) || c.Header().Get("X-Rollcall-Skipped-Messages") != "1" {
		t.Errorf("CSV: %d rows, skipped header %q; want %d and 1", n, c.Header().Get("X-Rollcall-Skipped-Messages"), len(users))
	}
}
