package natsutil_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// ca is a certificate authority made for one test.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM
}

func newCA(t *testing.T, dir, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &ca{cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, c.file, "CERTIFICATE", der)
	return c
}

// issue signs a leaf certificate for a server (with 127.0.0.1 and
// localhost) or a client, and returns its certificate and key files.
func (c *ca) issue(t *testing.T, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pki is what a TLS test needs: a server requiring client certificates of
// its CA, a client certificate of that CA and one of another CA.
type pki struct {
	ca, other             *ca
	clientCert, clientKey string
	otherCert, otherKey   string
	url                   string
}

func startTLSServer(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{ca: newCA(t, dir, "rollcall"), other: newCA(t, dir, "other")}
	srvCert, srvKey := p.ca.issue(t, dir, "server", true)
	p.clientCert, p.clientKey = p.ca.issue(t, dir, "client", false)
	p.otherCert, p.otherKey = p.other.issue(t, dir, "stranger", false)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: p.ca.file, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS server not ready")
	}
	p.url = "tls://" + s.Addr().String()
	return p
}

// A client with the CA and a client certificate of it gets in, through
// both the one-shot and the service connection; without a certificate, with
// one of another CA, or without trusting the server's CA, it is refused.
func TestTLSClientCertificates(t *testing.T) {
	p := startTLSServer(t)
	good := natsutil.ClientConfig{URL: p.url, Name: "tls-test", CAFile: p.ca.file, CertFile: p.clientCert, KeyFile: p.clientKey}

	nc, err := natsutil.ConnectOnce(good, 5*time.Second)
	if err != nil {
		t.Fatalf("with a client certificate of the server's CA: %v", err)
	}
	if _, err := nc.RTT(); err != nil {
		t.Fatal(err)
	}
	if st, err := nc.TLSConnectionState(); err != nil || len(st.PeerCertificates) == 0 {
		t.Fatalf("not a TLS connection: %v", err)
	}
	nc.Close()

	var logs syncbuf.Buffer
	svc, err := natsutil.Connect(good, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	waitFor(t, "service connection", func() bool { return svc.IsConnected() })

	for name, cfg := range map[string]natsutil.ClientConfig{
		"no client certificate":          {URL: p.url, CAFile: p.ca.file},
		"a certificate of another CA":    {URL: p.url, CAFile: p.ca.file, CertFile: p.otherCert, KeyFile: p.otherKey},
		"the server's CA not trusted":    {URL: p.url, CertFile: p.clientCert, KeyFile: p.clientKey},
		"the other CA trusted, not ours": {URL: p.url, CAFile: p.other.file, CertFile: p.clientCert, KeyFile: p.clientKey},
	} {
		t.Run(name, func(t *testing.T) {
			if nc, err := natsutil.ConnectOnce(cfg, 3*time.Second); err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			// The service keeps trying, and says why it cannot connect.
			var logs syncbuf.Buffer
			nc, err := natsutil.Connect(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			waitFor(t, "a log line saying the connection failed", func() bool { return strings.Contains(logs.String(), "nats connect failed") })
			if nc.IsConnected() {
				t.Fatal("service connection connected")
			}
		})
	}
}

// The notifier's commands (and the services, through the same
// natsClient) take NATS_CA_FILE, NATS_CERT_FILE and NATS_KEY_FILE.
func TestAppTLSVariables(t *testing.T) {
	p := startTLSServer(t)
	run := func(env map[string]string) (string, error) {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := notifierapp.DeadLetter(ctx, []string{"list"}, envconfig.MapLookuper(env), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	env := map[string]string{"NATS_URL": p.url, "NATS_CA_FILE": p.ca.file, "NATS_CERT_FILE": p.clientCert, "NATS_KEY_FILE": p.clientKey}
	if out, err := run(env); err != nil {
		t.Fatalf("notifier deadletter list over TLS: %v\n%s", err, out)
	}
	delete(env, "NATS_CERT_FILE")
	delete(env, "NATS_KEY_FILE")
	if _, err := run(env); err == nil || !strings.Contains(err.Error(), "connect to nats") {
		t.Fatalf("without a client certificate: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A wrong TLS file is named with its variable before any connection is
// tried: a key given as the CA, a missing file, half a client pair, a
// certificate given as its own key.
func TestTLSFilesCheckedUpFront(t *testing.T) {
	dir := t.TempDir()
	c := newCA(t, dir, "check")
	cert, key := c.issue(t, dir, "client", false)
	for name, tc := range map[string]struct {
		cfg  natsutil.ClientConfig
		want string
	}{
		"a key as the CA":         {natsutil.ClientConfig{CAFile: key}, "NATS_CA_FILE"},
		"a missing CA file":       {natsutil.ClientConfig{CAFile: filepath.Join(dir, "nope.pem")}, "NATS_CA_FILE"},
		"a certificate alone":     {natsutil.ClientConfig{CertFile: cert}, "set both or neither"},
		"a key alone":             {natsutil.ClientConfig{KeyFile: key}, "set both or neither"},
		"the certificate as key":  {natsutil.ClientConfig{CertFile: cert, KeyFile: cert}, "NATS_KEY_FILE"},
		"the CA's file as a pair": {natsutil.ClientConfig{CertFile: c.file, KeyFile: c.file}, "NATS_CERT_FILE"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.cfg.Options()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Options() = %v, want an error naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error quotes key material: %v", err)
			}
		})
	}
	if _, err := (natsutil.ClientConfig{CAFile: c.file, CertFile: cert, KeyFile: key}).Options(); err != nil {
		t.Fatalf("good files refused: %v", err)
	}
}
