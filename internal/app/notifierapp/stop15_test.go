package notifierapp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// Issue 15 point 6: a stop says it is stopping, posts the Slack digest it
// was collecting instead of cutting it off after the grace, and logs no
// warning or error.
func TestStopPostsTheDigestQuietly(t *testing.T) {
	srv, js := eventStreams(t)
	var mu sync.Mutex
	var posts []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer rcv.Close()
	const n = 6
	for i := range n {
		e, err := events.New(events.Spec{Type: events.TypeRegistered, Observed: time.Now(),
			User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: fmt.Sprint(100 + i), Email: fmt.Sprintf("p%d@school.example", i), Status: "registered"}})
		if err != nil {
			t.Fatal(err)
		}
		publish(t, js, e)
	}
	const grace = 30 * time.Second
	logs, stop := startNotifier(t, srv.ClientURL(), map[string]string{
		"SLACK_WEBHOOK_URL": rcv.URL + "/services/T0/B0/TOKENTOKENTOKEN", "SLACK_DIGEST_THRESHOLD": "2", "SLACK_DIGEST_WINDOW": "10m",
		"SHUTDOWN_GRACE": grace.String(), "SINK_START": "all", "LOG_FORMAT": "text",
	}, func() error {
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
		// The first two go out alone; the other four wait for the digest.
		if got != 2 || info.NumAckPending != n-2 {
			return fmt.Errorf("%d posts, %d waiting", got, info.NumAckPending)
		}
		return nil
	})
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took >= grace {
		t.Errorf("the stop took %s, the whole grace", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 3 || !strings.Contains(posts[2], "4 directory changes") {
		t.Fatalf("want the digest of the last four posted at the stop; posts: %q", posts)
	}
	out := logs.String()
	if !strings.Contains(out, "msg=\"stopping: finishing the deliveries in flight") {
		t.Errorf("the stop does not say it is stopping:\n%s", out)
	}
	for _, bad := range []string{"level=WARN", "level=ERROR"} {
		if strings.Contains(out, bad) {
			t.Errorf("a normal stop logged %s:\n%s", bad, out)
		}
	}
	c, err := js.Consumer(context.Background(), bus.EventsStream, "slack")
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, "every event acked", func() error {
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("%d unacked, %d pending", info.NumAckPending, info.NumPending)
		}
		return nil
	})
}

// Issue 15 point 5: a taken HTTP_ADDR is reported at once, first and only:
// no "started", no NATS connection attempt, no "stopped".
func TestTakenHTTPAddrIsTheOnlyMessage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// NATS_URL points nowhere: reaching for it would take its time and log.
	err = notifierapp.Run(ctx, envconfig.MapLookuper(map[string]string{
		"NATS_URL": "nats://127.0.0.1:1", "HTTP_ADDR": ln.Addr().String(), "CONSOLE": "true", "LOG_FORMAT": "text",
	}), io.Discard, logs)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, want := range []string{"HTTP_ADDR", ln.Addr().String(), "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, bad := range []string{"started", "stopped", "nats", "context canceled"} {
		if strings.Contains(strings.ToLower(logs.String()), bad) {
			t.Errorf("logged %q before the cause:\n%s", bad, logs)
		}
	}
}
