// Package natsutil starts the embedded NATS server and opens client
// connections with the options both services share.
package natsutil

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process server used on one machine.
type EmbeddedConfig struct {
	StoreDir string // JetStream file store
	Listen   string // host:port; port 0 picks a free one
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
	opts := &server.Options{
		ServerName: "rollcall-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s; is " + cfg.Listen + " already in use? set EMBEDDED_NATS_LISTEN to a free address")
	}
	if log != nil {
		log.Info("embedded nats server started", "url", s.ClientURL(), "store", cfg.StoreDir)
	}
	return s, nil
}

// ClientConfig is how a service reaches NATS.
type ClientConfig struct {
	URL      string
	Name     string // connection name shown by the server
	Creds    string // credentials file
	CAFile   string
	CertFile string
	KeyFile  string
}

// Connect opens a connection that reconnects for ever: the services report
// not-ready while disconnected rather than exiting.
func Connect(cfg ClientConfig, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// A service may start before its server (compose, the demo): keep
		// trying and report not-ready meanwhile instead of exiting.
		nats.RetryOnFailedConnect(true),
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	if log != nil {
		opts = append(opts,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil { // nil on a deliberate Close
					log.Warn("nats disconnected; reconnecting", "err", err)
				}
			}),
			nats.ConnectHandler(func(c *nats.Conn) {
				log.Info("nats connected", "url", c.ConnectedUrlRedacted())
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
			}),
		)
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w (check NATS_URL and that the server is running)", err)
	}
	return nc, nil
}
