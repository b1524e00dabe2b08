package notifier_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// While Slack's Retry-After runs the Slack sink posts nothing and fails the
// Send at once (ErrHeld) "so that it does not cost its event an attempt";
// the notifier counts it as one all the same. With MAX_ATTEMPTS 2, an event
// that arrives during a hold is dead-lettered after one post (or none),
// not after the two deliveries MAX_ATTEMPTS promises.
func TestRegress13SlackHoldCostsAnAttempt(t *testing.T) {
	t.Parallel()
	js := setup(t)
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("rate_limited"))
	}))
	t.Cleanup(srv.Close)
	posts := func(user string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range bodies {
			if bytes.Contains(b, []byte(user)) {
				n++
			}
		}
		return n
	}
	sl, err := slack.New(slack.Config{WebhookURL: srv.URL + "/services/T/B/x", DigestThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	start(t, js, notifier.Config{MaxAttempts: 2, Schedule: []time.Duration{50 * time.Millisecond}}, notifier.Route{Sink: sl})
	a := mkEvent(t, "vpp", "slackusera", events.TypeUpdated, 1)
	publish(t, js, a)
	testutil.CheckFor(t, waitLong, "a posted", func() error {
		if posts("slackusera") == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	b := mkEvent(t, "vpp", "slackuserb", events.TypeUpdated, 2) // during the hold
	publish(t, js, b)
	dls := waitDeadLetters(t, js, 2)
	for _, m := range dls {
		dl := decodeDeadLetter(t, m)
		t.Logf("dead letter %s: %d attempts: %s", dl.EventID, dl.Attempts, dl.Reason)
	}
	if n := posts("slackuserb"); n < 2 {
		t.Fatalf("event posted to Slack %d times before it was dead-lettered, want MAX_ATTEMPTS (2) deliveries: sends held by the sink's Retry-After were counted as attempts", n)
	}
}
