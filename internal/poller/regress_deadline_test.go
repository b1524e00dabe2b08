package poller_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// TestLostReplyUnderADeadlineDoesNotStopTheSource (found by the randomized
// simulation, seed 10 on CI): NATS restarted while a run waited for the
// answer to a KV read. The answer was lost with the connection, and the
// read waited for its context, which was the caller's: nats.go bounds a
// request by its own default timeout only when the context has no
// deadline, and the simulation's (like any embedding program's) had one, 3
// minutes away. The source stopped for the rest of it: a user created
// meanwhile was never registered.
//
// Here the poller runs under a 10-minute deadline, connected through a
// proxy that swallows the server's answers to one request and then cuts
// the connection. The source must run again, successfully, within
// seconds.
func TestLostReplyUnderADeadlineDoesNotStopTheSource(t *testing.T) {
	srv := natstest.Start(t)
	px := startProxy(t, srv.Addr().String())
	nc, err := nats.Connect("nats://"+px.addr(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := veeamtest.NewServer("api-key", veeamtest.FixtureUsers()...)
	api := httptest.NewServer(dir)
	t.Cleanup(api.Close)
	src, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: api.URL, Token: "api-key", PageSize: 2, Backoff: fast, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu sync.Mutex
		ok []time.Time // when each successful run ended
	)
	p := poller.New(js, h, poller.Config{CommitTimeout: time.Second, OnRun: func(_ string, _ poller.Result, err error) {
		if err == nil {
			mu.Lock()
			ok = append(ok, time.Now())
			mu.Unlock()
		}
	}}, poller.SourceConfig{Source: src, Interval: 20 * time.Millisecond})
	succeededAfter := func(at time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ok) > 0 && ok[len(ok)-1].After(at)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitUntil(t, 10*time.Second, "a first successful run", func() bool { return succeededAfter(time.Time{}) })

	// Swallow the answers from the moment a request goes out, then cut
	// the connection: that request's answer is lost for good.
	sent := px.hold()
	waitUntil(t, 5*time.Second, "a request while answers are held", func() bool { return px.sent() > sent })
	waitUntil(t, 5*time.Second, "the server's answer, held back", func() bool { return px.held.Load() > 0 })
	cut := time.Now()
	px.cutAndRelease()
	waitUntil(t, 10*time.Second, "a successful run after the lost answer", func() bool { return succeededAfter(cut) })
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxy forwards TCP connections to a NATS server; it can hold back
// everything the server sends, and cut every connection.
type proxy struct {
	l        net.Listener
	target   string
	up       atomic.Int64 // bytes forwarded client → server
	held     atomic.Int64 // bytes of the server held back (never forwarded)
	holding  atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
	shutdown atomic.Bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	go p.accept()
	t.Cleanup(func() {
		p.shutdown.Store(true)
		l.Close()
		p.closeAll()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) sent() int64 { return p.up.Load() }

// hold starts holding back the server's bytes; it returns the count of
// client bytes forwarded so far.
func (p *proxy) hold() int64 {
	p.holding.Store(true)
	return p.up.Load()
}

// cutAndRelease closes every connection (the held bytes are lost) and
// lets new connections through normally.
func (p *proxy) cutAndRelease() {
	p.closeAll()
	p.holding.Store(false)
}

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(countingWriter{c: s, n: &p.up}, c)
			s.Close()
		}()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && p.holding.Load() {
					p.held.Add(int64(n))
				} else if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	}
}

type countingWriter struct {
	c net.Conn
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.c.Write(b)
	w.n.Add(int64(n))
	return n, err
}
