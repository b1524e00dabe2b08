package notifierapp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// Review 15b: the digest Flush at a stop posts with context.Background()
// in a goroutine the pump does not wait for. When Slack answers slower than
// SHUTDOWN_GRACE, the waiting Sends are cut off and their events released
// (the next start sends them again), while the flushed digest still reaches
// Slack after Run has returned: the same changes are posted twice. Before
// the Flush, the cut-off members left the digest (gone) and nothing was
// posted for them until the next start.
func TestReview15bSlowDigestAtStopPostsTwice(t *testing.T) {
	srv, js := eventStreams(t)
	var mu sync.Mutex
	var posts []string
	slow := make(chan struct{}) // closed: posts are fast again
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "directory changes") {
			select {
			case <-slow:
			case <-time.After(3 * time.Second):
			}
		}
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer rcv.Close()
	defer close(slow)
	const n = 6
	for i := range n {
		e, err := events.New(events.Spec{Type: events.TypeRegistered, Observed: time.Now(),
			User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: fmt.Sprint(100 + i), Email: fmt.Sprintf("p%d@school.example", i), Status: "registered"}})
		if err != nil {
			t.Fatal(err)
		}
		publish(t, js, e)
	}
	env := map[string]string{
		"SLACK_WEBHOOK_URL": rcv.URL + "/services/T0/B0/TOKENTOKENTOKEN", "SLACK_DIGEST_THRESHOLD": "2", "SLACK_DIGEST_WINDOW": "10m",
		"SHUTDOWN_GRACE": "1s", "SINK_START": "all", "LOG_FORMAT": "text",
	}
	_, stop := startNotifier(t, srv.ClientURL(), env, func() error {
		c, err := js.Consumer(context.Background(), bus.EventsStream, "slack")
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		mu.Lock()
		got := len(posts)
		mu.Unlock()
		if got != 2 || info.NumAckPending != n-2 {
			return fmt.Errorf("%d posts, %d waiting", got, info.NumAckPending)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The flushed digest is still on its way; it lands after the stop.
	time.Sleep(3500 * time.Millisecond)

	// The next start: the released events come back.
	env["SLACK_DIGEST_WINDOW"] = "200ms"
	_, stop = startNotifier(t, srv.ClientURL(), env, func() error { return nil })
	c, err := js.Consumer(context.Background(), bus.EventsStream, "slack")
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, "every event acked", func() error {
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("%d unacked, %d pending", info.NumAckPending, info.NumPending)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 2; i < n; i++ {
		who := fmt.Sprintf("p%d@school.example", i)
		k := 0
		for _, p := range posts {
			if strings.Contains(p, who) {
				k++
			}
		}
		if k > 1 {
			t.Errorf("%s posted to Slack %d times", who, k)
		}
	}
	if t.Failed() {
		t.Logf("%d posts", len(posts))
	}
}
