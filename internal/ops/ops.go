// Package ops serves the operational endpoints both services expose:
// /metrics, /healthz and /readyz.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports one readiness condition; a non-nil error means not ready,
// unless it is a Degraded, which is reported without failing readiness.
type Check func(ctx context.Context) error

// Degraded is a condition worth reporting that does not make the service
// unready (removals held by the guard, say).
type Degraded string

func (d Degraded) Error() string { return string(d) }

// Handler builds the mux. checks are named readiness conditions.
func Handler(reg *prometheus.Registry, checks map[string]Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		body := struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}{Status: "ready", Checks: map[string]string{}}
		code := http.StatusOK
		degraded := false
		for name, c := range checks {
			err := c(ctx)
			var d Degraded
			switch {
			case err == nil:
				body.Checks[name] = "ok"
			case errors.As(err, &d):
				body.Checks[name] = "degraded: " + err.Error()
				degraded = true
			default:
				body.Checks[name] = err.Error()
				body.Status, code = "not ready", http.StatusServiceUnavailable
			}
		}
		if degraded && code == http.StatusOK {
			body.Status = "degraded"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
	return mux
}

// Listen binds the operational endpoints' address, so that a service can
// refuse to start, naming HTTP_ADDR, before it starts anything else. An
// empty addr serves nothing: the listener is nil.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w (%s)", addr, bindCause(err),
			BindHint(err, "another process listens there, perhaps a second copy of this service: set HTTP_ADDR to a free address, or empty to serve no /metrics, /healthz and /readyz"))
	}
	return ln, nil
}

// BindHint says what a failed listen most likely means and what to do:
// inUse for an address already in use (the only case where another
// process is to blame), the system's own meaning otherwise.
func BindHint(err error, inUse string) string {
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use"):
		return inUse
	case errors.Is(err, syscall.EADDRNOTAVAIL) || strings.Contains(err.Error(), "cannot assign requested address"):
		return "the address is not one of this machine's: use one of its addresses, 127.0.0.1, or 0.0.0.0 for all"
	case errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "permission denied"):
		return "a port below 1024 needs privileges: use a higher port"
	case errors.As(err, &dns) || strings.Contains(err.Error(), "no such host"):
		return "the host name does not resolve: use an IP address or a name this machine knows"
	}
	return "check the address"
}

// bindCause is the system's reason of a failed listen ("bind: address
// already in use"), without the address the caller names already.
func bindCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Serve listens on addr until ctx ends, then shuts down within 5s. An empty
// addr serves nothing.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	return ServeListener(ctx, ln, h, log)
}

// ServeListener serves h on ln (from Listen) until ctx ends, then shuts
// down within 5s. A nil ln serves nothing.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if ln == nil {
		<-ctx.Done()
		return nil
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NATSConnected is the readiness check of a NATS connection.
func NATSConnected(nc *nats.Conn) Check {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats %s", nc.Status())
		}
		return nil
	}
}

// RunService serves the operational endpoints on addr while main runs, and
// stops both when either ends or ctx does. The address is bound first: when
// it cannot be, RunService returns that error, naming HTTP_ADDR, without
// running main. main's error wins unless ctx was cancelled (a requested
// stop is not a failure).
func RunService(ctx context.Context, addr string, h http.Handler, log *slog.Logger, main func(context.Context) error) error {
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	return RunListener(ctx, ln, h, log, main)
}

// RunListener is RunService on a listener from Listen (nil: no endpoints),
// for a service that binds its address before it starts anything else.
func RunListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, main func(context.Context) error) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var httpErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if httpErr = ServeListener(ctx, ln, h, log); httpErr != nil {
			stop()
		}
	}()
	mainErr := main(ctx)
	outer := ctx.Err()
	stop()
	wg.Wait()
	if mainErr != nil && (outer == nil || httpErr != nil) {
		return errors.Join(mainErr, httpErr)
	}
	return httpErr
}
