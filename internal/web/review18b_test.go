package web

import (
	"net/http"
	"slices"
	"strings"
	"testing"

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
