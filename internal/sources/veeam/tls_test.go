package veeam_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// tlsEnv is the fake behind a TLS server with a self-signed certificate.
type tlsEnv struct {
	fake  *veeamtest.Server
	ts    *httptest.Server
	conns atomic.Int32 // connections opened, i.e. handshakes attempted
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	e := &tlsEnv{fake: veeamtest.NewServer(testToken, veeamtest.FixtureUsers()...)}
	e.ts = httptest.NewUnstartedServer(e.fake)
	// Failed handshakes are the point of some tests, not news.
	e.ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.conns.Add(1)
		}
	}
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

// caFile writes the server's certificate as PEM and returns the path.
func (e *tlsEnv) caFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "veeam-ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ts.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *tlsEnv) config(mod func(*veeam.Config)) veeam.Config {
	cfg := veeam.Config{Name: "veeam", BaseURL: e.ts.URL, Token: testToken, Backoff: tinyBackoff, MaxAttempts: 3}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

func TestTLSUntrustedIsNotRetried(t *testing.T) {
	e := newTLSEnv(t)
	c, err := veeam.New(e.config(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Snapshot(context.Background(), sources.Request{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error %v, want a certificate error", err)
	}
	if strings.Contains(err.Error(), "giving up") {
		t.Errorf("certificate error was retried: %v", err)
	}
	if n := e.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1: an untrusted certificate must not be retried", n)
	}
	if n := e.fake.Requests(); n != 0 {
		t.Errorf("%d requests reached the server over an untrusted connection", n)
	}
}

func TestTLSCAFile(t *testing.T) {
	e := newTLSEnv(t)
	ca := e.caFile(t)
	t.Run("default client", func(t *testing.T) {
		c, err := veeam.New(e.config(func(c *veeam.Config) { c.CAFile = ca }))
		if err != nil {
			t.Fatal(err)
		}
		snap, err := c.Snapshot(context.Background(), sources.Request{})
		if err != nil {
			t.Fatalf("snapshot with VEEAM_CA_FILE: %v", err)
		}
		assertExactly(t, snap.Users, veeamtest.FixtureUsers())
	})
	t.Run("given client is cloned, not modified", func(t *testing.T) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		given := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		c, err := veeam.New(e.config(func(c *veeam.Config) { c.CAFile = ca; c.HTTPClient = given }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Snapshot(context.Background(), sources.Request{}); err != nil {
			t.Fatalf("snapshot with VEEAM_CA_FILE and a given client: %v", err)
		}
		if given.Transport != tr || (tr.TLSClientConfig != nil && tr.TLSClientConfig.RootCAs != nil) {
			t.Error("the caller's client or transport was modified")
		}
	})
}

func TestTLSInsecureSkipVerifyWarns(t *testing.T) {
	e := newTLSEnv(t)
	var buf syncbuf.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	c, err := veeam.New(e.config(func(c *veeam.Config) { c.InsecureSkipVerify = true; c.Logger = logger }))
	if err != nil {
		t.Fatal(err)
	}
	if got := insecureWarnings(t, buf.String()); got != 1 {
		t.Fatalf("New logged %d verification warnings, want 1; logs:\n%s", got, buf.String())
	}
	for range 2 {
		snap, err := c.Snapshot(context.Background(), sources.Request{})
		if err != nil {
			t.Fatalf("snapshot with verification skipped: %v", err)
		}
		assertExactly(t, snap.Users, veeamtest.FixtureUsers())
	}
	if got := insecureWarnings(t, buf.String()); got != 3 {
		t.Errorf("%d verification warnings after New and two snapshots, want 3; logs:\n%s", got, buf.String())
	}
}

// insecureWarnings counts WARN lines saying verification is off and naming
// VEEAM_CA_FILE.
func insecureWarnings(t *testing.T, logs string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Level, Msg string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Level == "WARN" && strings.Contains(rec.Msg, "verification is OFF") && strings.Contains(rec.Msg, "VEEAM_CA_FILE") {
			n++
		}
	}
	return n
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := veeam.Config{Name: "veeam", BaseURL: "https://spc.example.com:1280", Token: testToken}
	tests := []struct {
		name    string
		mod     func(*veeam.Config)
		wantErr []string
	}{
		{name: "missing file", mod: func(c *veeam.Config) { c.CAFile = filepath.Join(dir, "nope.pem") }, wantErr: []string{"VEEAM_CA_FILE", "nope.pem", "no such file"}},
		{name: "no certificate in file", mod: func(c *veeam.Config) { c.CAFile = garbage }, wantErr: []string{"VEEAM_CA_FILE", "garbage.pem", "no PEM certificate"}},
		{name: "directory", mod: func(c *veeam.Config) { c.CAFile = dir }, wantErr: []string{"VEEAM_CA_FILE"}},
		{name: "both CA file and skip", mod: func(c *veeam.Config) { c.CAFile = garbage; c.InsecureSkipVerify = true }, wantErr: []string{"VEEAM_CA_FILE", "choose one"}},
		{
			name: "unknown transport",
			mod: func(c *veeam.Config) {
				c.InsecureSkipVerify = true
				c.HTTPClient = &http.Client{Transport: roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("x") })}
			},
			wantErr: []string{"transport of type"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			_, err := veeam.New(cfg)
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			for _, want := range append(tc.wantErr, "source veeam") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}
