package pollerapp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
)

// selfSigned writes a self-signed server certificate for 127.0.0.1 and its
// key, and returns their files.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rollcall-embedded"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// An embedded server listening beyond loopback must not take passwords in
// clear text (found by the review of issue 14): without
// EMBEDDED_NATS_TLS_CERT and _KEY it is refused; with them, the poller runs
// (connected in process), a plain-text client is refused, and the notifier
// connects over TLS with the certificate's CA and its password.
func TestEmbeddedServerBeyondLoopbackNeedsTLS(t *testing.T) {
	err := pollerapp.Run(context.Background(), envconfig.MapLookuper(map[string]string{"DATA_DIR": t.TempDir(),
		"EMBEDDED_NATS_LISTEN": "0.0.0.0:0", "VPP_STOKEN": "x", "HTTP_ADDR": ""}), &syncbuf.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "EMBEDDED_NATS_TLS_CERT") {
		t.Fatalf("a non-loopback embedded server without TLS: %v; want it refused, naming EMBEDDED_NATS_TLS_CERT", err)
	}

	dir := t.TempDir()
	cert, key := selfSigned(t, t.TempDir())
	sim := simulator.New(simulator.Config{Users: 3})
	api := httptest.NewServer(sim.Handler())
	t.Cleanup(api.Close)
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	env := map[string]string{"DATA_DIR": dir, "EMBEDDED_NATS_LISTEN": "0.0.0.0:" + port, "HTTP_ADDR": "", "ALLOW_INSECURE_HTTP": "true",
		"EMBEDDED_NATS_TLS_CERT": cert, "EMBEDDED_NATS_TLS_KEY": key,
		"VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": simulator.DefaultVPPToken, "VPP_INTERVAL": "100ms"}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pollerapp.Run(ctx, envconfig.MapLookuper(env), logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("poller: %v", err)
		}
		if t.Failed() {
			t.Logf("poller log:\n%s", logs.String())
		}
	})
	url := "nats://127.0.0.1:" + port
	password := func(user string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "auth", user+".password"))
		return strings.TrimSpace(string(b))
	}
	testutil.CheckFor(t, 20*time.Second, "the poller's streams, read over TLS", func() error {
		if strings.Contains(logs.String(), "level=ERROR") {
			return errors.New(logs.String())
		}
		nc, err := nats.Connect(url, nats.UserInfo("replay", password("replay")), nats.RootCAs(cert),
			nats.CustomInboxPrefix("_INBOX.replay"))
		if err != nil {
			return err
		}
		defer nc.Close()
		if _, err := nc.TLSConnectionState(); err != nil {
			return errors.New("connected without TLS")
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.Stream(ctx, bus.DeadLetterStream) // the last one bus.Ensure makes
		return err
	})

	// Plain text, even with the right password, is refused.
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _ := conn.Read(info)
	if !strings.Contains(string(info[:n]), `"tls_required":true`) {
		t.Fatalf("the server does not require TLS: %s", info[:n])
	}
	if nc, err := nats.Connect(url, nats.UserInfo("replay", password("replay")), nats.Secure(&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS10})); err == nil {
		nc.Close()
		t.Fatal("a client offering only TLS 1.0 was accepted")
	}
}
