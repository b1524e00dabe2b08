package deployments

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/natsutil"
)

// routeIdentity is the subject every node certificate has: cluster.conf
// lets a route in only with a certificate of its CA that has it
// (verify_and_map and the cluster's authorization user).
const routeIdentity = "CN=rollcall-nats-route"

// testCA is a certificate authority made by the test with crypto/x509, in
// a temporary directory.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	file string // the CA certificate (PEM), as NATS_TLS_CA_FILE and NATS_CA_FILE take it
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"rollcall test"}, CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	ca.file = filepath.Join(ca.dir, "ca.pem")
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue signs a certificate for subject with the given SANs and extended
// key usages, and returns the files of the certificate and its key.
func (ca *testCA) issue(t *testing.T, file string, subject pkix.Name, dns []string, ips []net.IP, usage ...x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, file+".pem"), filepath.Join(ca.dir, file+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

// node issues a node certificate as cluster.conf's contract asks: the
// route identity as subject, the node's name, localhost and 127.0.0.1 as
// SANs, for server and client use.
func (ca *testCA) node(t *testing.T, name string) nodeTLS {
	t.Helper()
	cert, key := ca.issue(t, name, pkix.Name{CommonName: strings.TrimPrefix(routeIdentity, "CN=")},
		[]string{name, "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	return nodeTLS{ca: ca.file, cert: cert, key: key}
}

// nodeTLS are a node's TLS files, for NATS_TLS_CA_FILE, NATS_TLS_CERT_FILE
// and NATS_TLS_KEY_FILE.
type nodeTLS struct{ ca, cert, key string }

func (n nodeTLS) setenv(t *testing.T) {
	t.Setenv("NATS_TLS_CA_FILE", n.ca)
	t.Setenv("NATS_TLS_CERT_FILE", n.cert)
	t.Setenv("NATS_TLS_KEY_FILE", n.key)
}

// tlsCluster is a cluster started from cluster.conf.
type tlsCluster struct {
	servers []*server.Server
	logs    []*serverLog
	routes  string // NATS_CLUSTER_ROUTES
}

func (c *tlsCluster) urls() string {
	var u []string
	for _, s := range c.servers {
		u = append(u, s.ClientURL())
	}
	return strings.Join(u, ",")
}

// startTLSCluster starts one node per name from the cluster configuration
// at path, each in the environment its contract asks for: its name, every
// node's route URL (no credentials, loopback ports) and its TLS files. It
// waits for a JetStream meta leader that every node follows.
func startTLSCluster(t *testing.T, path string, names []string, files func(i int) nodeTLS) *tlsCluster {
	t.Helper()
	ports := natstest.FreePorts(t, len(names))
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &tlsCluster{routes: "[" + strings.Join(routes, ", ") + "]"}
	t.Setenv("NATS_CLUSTER_ROUTES", c.routes)
	for i, name := range names {
		t.Setenv("NATS_SERVER_NAME", name)
		files(i).setenv(t)
		s, log := startServer(t, path, func(o *server.Options) {
			if o.ServerName != name || o.Cluster.Name != "rollcall" || len(o.Routes) != len(names) {
				t.Fatalf("node %d: name %q, cluster %q, %d routes", i, o.ServerName, o.Cluster.Name, len(o.Routes))
			}
			o.Cluster.Host, o.Cluster.Port = "127.0.0.1", ports[i]
			o.LameDuckDuration = 0
		})
		c.servers, c.logs = append(c.servers, s), append(c.logs, log)
	}
	waitFor(t, "a JetStream meta leader over TLS routes", func() error {
		leaders := 0
		for i, s := range c.servers {
			if s.JetStreamIsLeader() {
				leaders++
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s is not current with the meta leader; its log: %s", names[i], c.logs[i].logged())
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
	return c
}

// The cluster.conf file: TLS for clients and routes with certificates the
// test makes, routes authenticated by certificate (no password in any
// route URL), monitoring on loopback only. Three nodes started from it form
// a JetStream cluster with a meta leader that takes replicated streams; a
// client that does not speak TLS, or does not trust the CA, is refused, a
// TLS client with the CA and its password gets in; and a node with a
// certificate of another CA, a certificate of the same CA for another
// subject, or no TLS at all is not let into the cluster.
func checkClusterConfig(t *testing.T, path string) {
	pw := setPasswords(t)
	ca := newTestCA(t, "rollcall test CA")
	names := []string{"nats-0", "nats-1", "nats-2"}
	nodes := make([]nodeTLS, len(names))
	for i, n := range names {
		nodes[i] = ca.node(t, n)
	}

	// What the file says, before the test moves ports.
	t.Setenv("NATS_SERVER_NAME", names[0])
	t.Setenv("NATS_CLUSTER_ROUTES", "[nats://nats-0:6222, nats://nats-1:6222, nats://nats-2:6222]")
	nodes[0].setenv(t)
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.MinVersion < 0x0303 {
		t.Error("clients: no TLS (tls { cert_file, key_file, ca_file })")
	}
	if opts.AllowNonTLS {
		t.Error("clients: allow_non_tls is set; plain-text clients would get in")
	}
	if opts.Cluster.TLSConfig == nil || !opts.Cluster.TLSMap {
		t.Errorf("routes: TLS %v, verify_and_map %v; want mutual TLS that maps the certificate to the route user", opts.Cluster.TLSConfig != nil, opts.Cluster.TLSMap)
	}
	if opts.Cluster.Username != routeIdentity || opts.Cluster.Password != "" {
		t.Errorf("routes: authorization user %q with a password %v; want %q (the node certificates' subject) and no password", opts.Cluster.Username, opts.Cluster.Password != "", routeIdentity)
	}
	for _, u := range opts.Routes {
		if u.User != nil {
			t.Errorf("route %s carries credentials", u.Redacted())
		}
	}
	if opts.HTTPPort != 0 || opts.HTTPSPort != 0 {
		if ip := net.ParseIP(opts.HTTPHost); opts.HTTPHost != "localhost" && (ip == nil || !ip.IsLoopback()) {
			t.Errorf("monitoring listens on %q: bind it to loopback or remove it", opts.HTTPHost)
		}
	}

	// Three nodes from the file form a cluster over TLS routes.
	c := startTLSCluster(t, path, names, func(i int) nodeTLS { return nodes[i] })
	// A TLS client with the CA and its password: the poller making its
	// replicated streams.
	pol := connectWith(t, natsutil.ClientConfig{URL: c.urls(), Name: "test-poller", User: "poller", Password: pw["poller"], CAFile: ca.file})
	if _, err := pol.nc.TLSConnectionState(); err != nil {
		t.Errorf("the client connection is not TLS: %v", err)
	}
	waitFor(t, "a replicated stream on the cluster", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := bus.Ensure(ctx, pol.js, bus.Config{Replicas: 3})
		return err
	})
	// The same client with a wrong password, and one that does not trust
	// the CA, are refused.
	url := c.servers[0].ClientURL()
	if nc, err := nats.Connect(url, nats.UserInfo("poller", pw["poller"]+"x"), nats.RootCAs(ca.file), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("a wrong password got in over TLS")
	}
	if nc, err := nats.Connect(url, nats.UserInfo("poller", pw["poller"]), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("a client that does not trust the CA connected")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
	// A plain-text client, right password and all, is refused.
	if err := plainTextClient(url, "poller", pw["poller"]); err != nil {
		t.Error(err)
	}
	// Routes: nodes that do not belong are not let in.
	t.Run("routes refused", func(t *testing.T) {
		other := newTestCA(t, "another CA")
		client, clientKey := ca.issue(t, "client", pkix.Name{CommonName: "poller"}, []string{"intruder", "localhost"},
			[]net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
		for _, in := range []struct {
			what  string
			files nodeTLS
			edit  func(*server.Options)
			// what the intruder and the cluster's nodes log about it
			intruderLogs, nodeLogs string
		}{
			{"a node certificate of another CA", other.node(t, "intruder"), nil,
				"certificate signed by unknown authority", "TLS route handshake error"},
			{"a certificate of the cluster's CA for another subject", nodeTLS{ca: ca.file, cert: client, key: clientKey}, nil,
				"Authorization Violation", "authentication error"},
			{"no TLS on its routes", nodes[0], func(o *server.Options) { o.Cluster.TLSConfig, o.Cluster.TLSMap = nil, false },
				"", "does not look like a TLS handshake"},
		} {
			t.Run(in.what, func(t *testing.T) {
				t.Setenv("NATS_SERVER_NAME", "intruder")
				in.files.setenv(t)
				before := make([]string, len(c.servers))
				for i := range c.servers {
					before[i] = c.logs[i].logged()
				}
				s, log := startServer(t, path, func(o *server.Options) {
					o.Cluster.Host, o.Cluster.Port, o.LameDuckDuration = "127.0.0.1", -1, 0
					if in.edit != nil {
						in.edit(o)
					}
				})
				// Both ends say why (handshake, authorization).
				waitFor(t, "the intruder's routes refused", func() error {
					if !strings.Contains(log.logged(), in.intruderLogs) {
						return fmt.Errorf("the intruder has not logged %q yet: %s", in.intruderLogs, log.logged())
					}
					for i := range c.servers {
						if !strings.Contains(strings.TrimPrefix(c.logs[i].logged(), before[i]), in.nodeLogs) {
							return fmt.Errorf("%s has not logged %q yet", names[i], in.nodeLogs)
						}
					}
					return nil
				})
				time.Sleep(200 * time.Millisecond)
				if n := s.NumRoutes(); n != 0 {
					t.Errorf("the intruder has %d routes; its log:\n%s", n, log.logged())
				}
				for i, cs := range c.servers {
					rz, err := cs.Routez(nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range rz.Routes {
						if r.RemoteName == "intruder" {
							t.Errorf("%s has a route to the intruder", names[i])
						}
					}
				}

			})
		}
	})
}

// plainTextClient connects without TLS, as a client that ignores the
// server's tls_required would, and sends CONNECT with a right password and
// a PING. The server must ask for TLS and never answer PONG.
func plainTextClient(url, user, password string) error {
	_, hostPort, _ := strings.Cut(url, "://")
	conn, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("plain-text client: no INFO: %v", err)
	}
	var info struct {
		TLSRequired  bool `json:"tls_required"`
		TLSAvailable bool `json:"tls_available"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info); err != nil {
		return fmt.Errorf("plain-text client: INFO %q: %v", line, err)
	}
	if !info.TLSRequired {
		return fmt.Errorf("the server does not require TLS: %s", line)
	}
	connect, _ := json.Marshal(map[string]any{"user": user, "pass": password, "verbose": false, "pedantic": false, "tls_required": false})
	if _, err := fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect); err != nil {
		return nil // closed already
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil // the server closed the connection
		}
		if strings.HasPrefix(line, "PONG") {
			return errors.New("a plain-text client got in (PONG)")
		}
	}
}

// The gen-certs.sh script: run with openssl as README "Compose" says, it
// makes a CA and node certificates that cluster.conf accepts (three nodes
// form a cluster with them and a TLS client trusting ca.pem gets in), keys
// only the owner can read, and run again it keeps them.
func checkGenCerts(t *testing.T, path string) {
	pw := setPasswords(t)
	names := []string{"nats-1", "nats-2", "nats-3"}
	dir := genCerts(t, path, t.TempDir(), names, "")
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, f := range []string{"ca-key.pem", "nats-1-key.pem", "nats-2-key.pem", "nats-3-key.pem"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v, mode %v; want a key only its owner reads", f, err, fi.Mode())
		}
	}
	ca, cert := read("ca.pem"), read("nats-1.pem")
	genCerts(t, path, dir, names, "")
	if read("ca.pem") != ca || read("nats-1.pem") != cert {
		t.Error("run again, gen-certs.sh replaced certificates that were still good")
	}
	c := startTLSCluster(t, "nats/cluster.conf", names, func(i int) nodeTLS {
		return nodeTLS{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, names[i]+".pem"), key: filepath.Join(dir, names[i]+"-key.pem")}
	})
	rep := connectWith(t, natsutil.ClientConfig{URL: c.urls(), Name: "test-replay", User: "replay", Password: pw["replay"], CAFile: filepath.Join(dir, "ca.pem")})
	if _, err := rep.nc.TLSConnectionState(); err != nil {
		t.Errorf("not a TLS connection: %v", err)
	}
}

// genCerts runs gen-certs.sh (at script) into dir for the nodes, with
// NATS_CERT_EXTRA_SANS set to extra, and returns dir. Without openssl it
// skips, unless ROLLCALL_OPENSSL=require (.ci/run installs openssl and sets
// it).
func genCerts(t *testing.T, script, dir string, nodes []string, extra string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("ROLLCALL_OPENSSL") == "require" {
			t.Fatal("ROLLCALL_OPENSSL=require, but openssl is not installed; gen-certs.sh needs it")
		}
		t.Skip("SKIPPED: no openssl here (Debian: apt-get install openssl); gen-certs.sh needs it")
	}
	cmd := exec.Command("sh", append([]string{script, dir}, nodes...)...)
	cmd.Env = append(os.Environ(), "NATS_CERT_EXTRA_SANS="+extra)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh %s: %v\n%s", script, err, out)
	}
	return dir
}
