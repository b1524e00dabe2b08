// Review 18b: deadletter.Redrive sent every picked dead letter, then
// removed them one by one, and returned at the first sign that its context
// ended without removing those already sent; a console redrive whose sends
// completed as redriveTimeout passed left them to be sent again. Fixed in
// internal/deadletter: what was sent is removed whatever the context.
package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/pkg/events"
)

// lateSender is a sink that receives at once and answers only when the
// redrive's context has ended (the answer arrives as the timeout passes).
type lateSender struct {
	mu  sync.Mutex
	got map[string]int
}

func (s *lateSender) Send(ctx context.Context, e events.Event) error {
	s.mu.Lock()
	s.got[e.ID()]++
	n := s.got[e.ID()]
	s.mu.Unlock()
	if n == 1 {
		<-ctx.Done()
	}
	return nil
}

func TestReview18bOpenRedriveTimeoutLeavesSentDeadLetters(t *testing.T) {
	old := redriveTimeout
	redriveTimeout = 300 * time.Millisecond
	t.Cleanup(func() { redriveTimeout = old })
	snd := &lateSender{got: map[string]int{}}
	var jsRef jetstream.JetStream
	s, js := console(t, Config{Access: Access{Loopback: true}, Sinks: []Sink{{Name: "webhook", Kind: "webhook"}},
		Redrive: func(ctx context.Context, sink, id string) (deadletter.RedriveStats, error) {
			return deadletter.Redrive(ctx, jsRef, map[string]deadletter.Sender{"webhook": snd}, sink, id, io.Discard)
		}})
	jsRef = js
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "u-6", Email: "dl6@example.com", Status: "enabled"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	review18DeadLetter(t, js, "webhook", e)
	h := s.Handler()
	form := url.Values{"sink": {"webhook"}, "csrf": {s.csrf.token("local")}}
	for range 2 {
		r := httptest.NewRequest(http.MethodPost, "/deadletters/redrive", strings.NewReader(form.Encode()))
		r.RemoteAddr, r.Host = "127.0.0.1:40000", "127.0.0.1"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if n := snd.got[e.ID()]; n != 1 {
		t.Errorf("a redrive whose sends completed as its timeout passed, then another: event %s delivered %d times, want once (the first left the dead letter it had sent)", e.ID(), n)
	}
}
