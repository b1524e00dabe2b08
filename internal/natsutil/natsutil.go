// Package natsutil starts the embedded NATS server and opens client
// connections with the options both services share.
package natsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process server used on one machine.
type EmbeddedConfig struct {
	StoreDir string // JetStream file store
	Listen   string // host:port; port 0 picks a free one
	// Auth is NATS configuration text for the server's users (an
	// authorization block and what it refers to); empty: no
	// authentication.
	Auth string
	// TLSCert and TLSKey, when set, make every network client use TLS
	// (in-process connections are exempt: see ClientConfig.InProcess).
	TLSCert, TLSKey string
}

// StartEmbedded runs a NATS server with JetStream in this process and waits
// until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{}
	if cfg.Auth != "" {
		if err := opts.ProcessConfigString(cfg.Auth); err != nil {
			// The text holds passwords: name the problem, not the text.
			return nil, errors.New("embedded nats: the generated authorization configuration does not parse")
		}
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: EMBEDDED_NATS_TLS_CERT and EMBEDDED_NATS_TLS_KEY: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, tc, 2
	}
	opts.ServerName, opts.Host, opts.Port = "rollcall-embedded", host, port
	opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = true, cfg.StoreDir, true, true
	// A taken address is reported at once: the server itself would only
	// fail to become ready. The probe names the system's reason; the
	// server's fatal error catches an address taken between the two.
	if port != server.RANDOM_PORT {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, &ListenError{Addr: cfg.Listen, Err: bindCause(err)}
		}
		ln.Close()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	fatal := &fatalLogger{c: make(chan string, 1)}
	s.SetLogger(fatal, false, false)
	go s.Start()
	ready := make(chan bool, 1)
	go func() { ready <- s.ReadyForConnections(10 * time.Second) }()
	select {
	case ok := <-ready:
		if !ok {
			s.Shutdown()
			return nil, errors.New("embedded nats: not ready after 10s; is " + cfg.Listen + " already in use? set EMBEDDED_NATS_LISTEN to a free address")
		}
	case msg := <-fatal.c:
		// The readiness wait ends by itself, at its deadline.
		s.Shutdown()
		if strings.HasPrefix(msg, "Error listening") {
			return nil, &ListenError{Addr: cfg.Listen, Err: errors.New(msg)}
		}
		return nil, fmt.Errorf("embedded nats: %s", msg) // JetStream could not start, say
	}
	if log != nil {
		log.Info("embedded nats server started", "url", s.ClientURL(), "store", cfg.StoreDir)
	}
	return s, nil
}

// ListenError is an embedded server that cannot listen on its address,
// most often because another process (a second poller, a NATS server)
// listens there.
type ListenError struct {
	Addr string
	Err  error // the system's reason, e.g. "bind: address already in use"
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("embedded nats: cannot listen on %s: %v", e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// bindCause is the system's reason of a failed listen, without the address
// the caller names already.
func bindCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// fatalLogger receives the embedded server's log: it keeps quiet, as the
// server did with NoLog, except for a fatal error (a listener that cannot
// be opened), which it hands over so that StartEmbedded returns it at once
// instead of waiting for a readiness that never comes.
type fatalLogger struct{ c chan string }

func (l *fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l.c <- fmt.Sprintf(format, v...):
	default:
	}
}
func (*fatalLogger) Noticef(string, ...any) {}
func (*fatalLogger) Warnf(string, ...any)   {}
func (*fatalLogger) Errorf(string, ...any)  {}
func (*fatalLogger) Debugf(string, ...any)  {}
func (*fatalLogger) Tracef(string, ...any)  {}

// ClientConfig is how a service reaches NATS.
type ClientConfig struct {
	URL   string
	Name  string // connection name shown by the server
	Creds string // credentials file
	// User and Password authenticate with a user of the server's
	// configuration (NATS_USER, NATS_PASSWORD); Password is a secret and
	// appears in no log line or error.
	User     string
	Password string
	CAFile   string
	CertFile string
	KeyFile  string
	// InProcess connects to a server of this process without the network
	// (the poller to its embedded server when that requires TLS).
	InProcess *server.Server
}

// InboxPrefix is where replies to a user come: _INBOX.<user>, so that each
// user may be allowed to subscribe to its own replies only and cannot read
// another's (deployments/nats/accounts.conf). Without a user, or with one
// that is not a valid subject, it is nats.go's default _INBOX.
func (cfg ClientConfig) InboxPrefix() string {
	if cfg.User == "" || strings.ContainsAny(cfg.User, "*>. \t\r\n") {
		return nats.InboxPrefix[:len(nats.InboxPrefix)-1]
	}
	return nats.InboxPrefix + cfg.User
}

// Options are the connection name, authentication, TLS and inbox options of
// cfg, shared by the services (Connect), one-shot commands (ConnectOnce)
// and tests that need options of their own on top.
func (cfg ClientConfig) Options() ([]nats.Option, error) {
	if cfg.Password != "" && cfg.User == "" {
		return nil, errors.New("nats: a password is set without a user")
	}
	if cfg.User != "" && cfg.Creds != "" {
		return nil, errors.New("nats: both a user and a credentials file are set; use one")
	}
	opts := []nats.Option{nats.Name(cfg.Name)}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password), nats.CustomInboxPrefix(cfg.InboxPrefix()))
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	if err := cfg.checkTLSFiles(); err != nil {
		return nil, err
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

// checkTLSFiles reads the TLS files before nats.go does, so that a wrong
// one is named with its variable and what to put there; nats.go's own
// error reaches the operator only as a failed connection.
func (cfg ClientConfig) checkTLSFiles() error {
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return fmt.Errorf("NATS_CA_FILE: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("NATS_CA_FILE %s: no PEM certificate in it; give the CA that signed the NATS servers' certificates (ca.pem of deployments/nats/gen-certs.sh)", cfg.CAFile)
		}
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return errors.New("NATS_CERT_FILE and NATS_KEY_FILE: set both or neither")
	}
	if cfg.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			// The error quotes no key material.
			return fmt.Errorf("NATS_CERT_FILE and NATS_KEY_FILE: not a certificate and its private key in PEM: %w", err)
		}
	}
	return nil
}

// Connect opens a connection that reconnects for ever: the services report
// not-ready while disconnected rather than exiting.
func Connect(cfg ClientConfig, log *slog.Logger) (*nats.Conn, error) {
	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// A service may start before its server (compose, the demo): keep
		// trying and report not-ready meanwhile instead of exiting.
		nats.RetryOnFailedConnect(true),
		// A refused password or certificate is retried too, so that a
		// service recovers once the server's side is fixed, as it does from
		// an outage; the refusal is logged (below) and readiness fails.
		nats.IgnoreAuthErrorAbort(),
	)
	r := newRedactor(cfg)
	if log != nil {
		failed := &throttle{every: 30 * time.Second}
		opts = append(opts,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil { // nil on a deliberate Close
					log.Warn("nats disconnected; reconnecting", "err", r.err(err))
				}
			}),
			// Without this a wrong password or certificate would only show
			// as not-ready: say why, but not once a second.
			nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
				if failed.allow(err.Error()) {
					log.Warn("nats connect failed; retrying", "servers", r.str(cfg.URL), "err", r.err(err))
				}
			}),
			nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
				subject := ""
				if sub != nil {
					subject = sub.Subject
				}
				log.Warn("nats error", "subject", subject, "err", r.err(err))
			}),
			nats.ConnectHandler(func(c *nats.Conn) {
				log.Info("nats connected", "url", c.ConnectedUrlRedacted())
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
			}),
			nats.ClosedHandler(func(c *nats.Conn) {
				if err := c.LastError(); err != nil {
					log.Error("nats connection closed; not reconnecting", "err", r.err(err))
				}
			}),
		)
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, r.err(fmt.Errorf("connect to nats: %w (check NATS_URL and that the server is running)", err))
	}
	return nc, nil
}

// ConnectOnce opens a connection for a one-shot command: no reconnect loop,
// since a command that cannot reach NATS should say so and exit.
func ConnectOnce(cfg ClientConfig, timeout time.Duration) (*nats.Conn, error) {
	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URL, append(opts, nats.Timeout(timeout))...)
	if err != nil {
		return nil, newRedactor(cfg).err(err)
	}
	return nc, nil
}
