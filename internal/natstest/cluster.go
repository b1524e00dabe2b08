package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/natsutil"
)

// ClusterName is the name of every test cluster.
const ClusterName = "rollcall-test"

// Cluster is a JetStream cluster of embedded servers routed to each other
// on loopback. Each node keeps its client port, cluster port and store
// across Stop and Restart, as a real node restarted by its supervisor does.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	opts    []server.Options // per node, copied afresh for every start
	servers []*server.Server // nil while a node is stopped
}

// StartCluster runs n routed JetStream servers until the test ends and
// waits until they have elected a meta leader and every node is current.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: cluster of %d nodes", n)
	}
	clientPorts, clusterPorts := FreePorts(t, n), FreePorts(t, n)
	routes := make([]string, n)
	for i, p := range clusterPorts {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	c := &Cluster{t: t, servers: make([]*server.Server, n)}
	for i := 0; i < n; i++ {
		c.opts = append(c.opts, server.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: ClusterName,
				Host: "127.0.0.1",
				Port: clusterPorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	t.Cleanup(c.shutdown)
	for i := 0; i < n; i++ {
		c.start(i)
	}
	c.WaitReady()
	return c
}

// FreePorts picks n distinct free loopback ports. They are released before
// the servers bind them; on loopback the window for a clash is tiny.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	opts := c.opts[i] // a copy: the server keeps and changes its options
	opts.Routes = append(opts.Routes[:0:0], opts.Routes...)
	s, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("natstest: node %d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("natstest: node %d not ready for connections after 10s", i)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
}

func (c *Cluster) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.servers) - 1; i >= 0; i-- {
		if s := c.servers[i]; s != nil {
			s.Shutdown()
			s.WaitForShutdown()
			c.servers[i] = nil
		}
	}
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int { return len(c.opts) }

// Server is node i, or nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Servers lists the running nodes.
func (c *Cluster) Servers() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.servers {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Name is node i's server name ("n1", "n2", …), as stream and consumer
// cluster info report leaders and replicas.
func (c *Cluster) Name(i int) string { return c.opts[i].ServerName }

// Index returns the node whose server name is name, or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// URL is node i's client URL; it stays the same across restarts.
func (c *Cluster) URL(i int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(c.opts[i].Port)
}

// URLs lists every node's client URL, comma-separated, as NATS_URL takes
// them.
func (c *Cluster) URLs() string {
	urls := make([]string, c.N())
	for i := range urls {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// Stop shuts node i down, keeping its store for Restart.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again (stopping it first if it runs) on the same
// ports and store, and waits until the cluster is ready again.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Stop(i)
	c.start(i)
	c.WaitReady()
}

// WaitReady waits until a running node is the meta leader, every running
// node is current with it, and the JetStream API answers on each of them.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: cluster not ready after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) ready() error {
	leader := false
	for _, s := range c.Servers() {
		if s.JetStreamIsLeader() {
			leader = true
		}
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("%s is not current", s.Name())
		}
	}
	if !leader {
		return errors.New("no meta leader")
	}
	for _, s := range c.Servers() {
		if err := accountInfo(s.ClientURL()); err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
	}
	return nil
}

func accountInfo(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Single is one JetStream server that a test can stop and start again on
// the same port and store, as a server restarted by its supervisor.
type Single struct {
	t    testing.TB
	dir  string
	port int

	mu  sync.Mutex
	srv *server.Server
}

// StartSingle runs a JetStream server with a file store on a random port
// until the test ends.
func StartSingle(t testing.TB) *Single {
	t.Helper()
	s := &Single{t: t, dir: t.TempDir()}
	srv := start(t, s.dir, 0)
	s.srv, s.port = srv, srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Stop)
	return s
}

// Server is the running server, or nil while it is stopped.
func (s *Single) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// URL is the client URL; it stays the same across restarts.
func (s *Single) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// Stop shuts the server down, keeping its store.
func (s *Single) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts the server again (stopping it first if it runs) on the
// same port and store.
func (s *Single) Restart() {
	s.t.Helper()
	s.Stop()
	srv := start(s.t, s.dir, s.port)
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// RestartSingle shuts down srv, a server from Start or StartIn, and starts
// another on the same port and store, which runs until the test ends.
func RestartSingle(t testing.TB, srv *server.Server) *server.Server {
	t.Helper()
	store := srv.StoreDir()
	if store == "" {
		t.Fatal("natstest: RestartSingle: the server runs no JetStream (or is already stopped)")
	}
	if filepath.Base(store) == server.JetStreamStoreDir {
		store = filepath.Dir(store) // the server appends "jetstream" to what it is given
	}
	port := srv.Addr().(*net.TCPAddr).Port
	srv.Shutdown()
	srv.WaitForShutdown()
	next := start(t, store, port)
	t.Cleanup(next.Shutdown)
	return next
}

func start(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	s, err := natsutil.StartEmbedded(natsutil.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:" + strconv.Itoa(port)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// LocalStream reports the state of stream name as node s itself stores it.
// Stream info, which any client gets, is the leader's view; this is the
// replica's own, which is how a test sees a restarted node catch up.
func LocalStream(s *server.Server, name string) (server.StreamState, bool) {
	info, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return server.StreamState{}, false
	}
	for _, a := range info.AccountDetails {
		for _, sd := range a.Streams {
			if sd.Name == name {
				return sd.State, true
			}
		}
	}
	return server.StreamState{}, false
}
