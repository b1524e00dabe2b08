package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/testutil"
)

// TestLockSink: a redrive of a sink waits for the one under way, another
// sink's does not, a wait ends with its context, and a sink's entry goes
// once nobody holds or waits for it.
func TestLockSink(t *testing.T) {
	s := &Server{redriving: map[string]*sinkLock{}}
	ctx := context.Background()
	unlock, waited, err := s.lockSink(ctx, "webhook")
	if err != nil || waited {
		t.Fatalf("first lock: waited %v, %v", waited, err)
	}
	other, waited, err := s.lockSink(ctx, "slack")
	if err != nil || waited {
		t.Fatalf("another sink: waited %v, %v", waited, err)
	}
	other()
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.lockSink(short, "webhook"); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with an ended context: %v, want context.Canceled", err)
	}
	got := make(chan bool, 1)
	go func() {
		u, waited, err := s.lockSink(ctx, "webhook")
		if err != nil {
			t.Error(err)
		}
		u()
		got <- waited
	}()
	// The second takes the sink only once the first lets it go.
	testutil.CheckFor(t, 10*time.Second, "the second redrive waiting", func() error {
		s.redriveMu.Lock()
		defer s.redriveMu.Unlock()
		if l := s.redriving["webhook"]; l == nil || l.refs != 2 {
			return errors.New("not waiting yet")
		}
		return nil
	})
	unlock()
	if !<-got {
		t.Error("the second redrive of the sink did not wait for the first")
	}
	s.redriveMu.Lock()
	defer s.redriveMu.Unlock()
	if len(s.redriving) != 0 {
		t.Errorf("locks left after every redrive ended: %v", s.redriving)
	}
}

// TestRedriveAlreadyRedriven: a redrive of a dead letter that is no
// longer listed (the form sent twice) says so, as a result, not a
// failure.
func TestRedriveAlreadyRedriven(t *testing.T) {
	s, _ := console(t, Config{Access: Access{Loopback: true}, Redrive: func(_ context.Context, sink, id string) (deadletter.RedriveStats, error) {
		return deadletter.RedriveStats{}, fmt.Errorf("%w event id %s of sink %s", deadletter.ErrNoMatch, id, sink)
	}})
	form := url.Values{"sink": {"webhook"}, "id": {"abc"}, "csrf": {s.csrf.token("local")}}
	r := httptest.NewRequest(http.MethodPost, "/deadletters/redrive", strings.NewReader(form.Encode()))
	r.RemoteAddr = "127.0.0.1:40000"
	r.Host = "127.0.0.1" // a loopback console without login answers only to a loopback host (DNS rebinding)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if body := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(body, "already redriven") {
		t.Errorf("status %d, want 200 saying already redriven: %s", w.Code, body)
	}
}
