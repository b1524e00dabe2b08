package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/ops"
)

func TestEndpoints(t *testing.T) {
	healthy := true
	h := ops.Handler(ops.NewRegistry(), map[string]ops.Check{
		"nats": func(context.Context) error {
			if !healthy {
				return errors.New("nats RECONNECTING")
			}
			return nil
		},
	})
	get := func(path string) (*httptest.ResponseRecorder, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec, body
	}
	if rec, _ := get("/healthz"); rec.Code != 200 {
		t.Fatalf("/healthz = %d", rec.Code)
	}
	if rec, body := get("/readyz"); rec.Code != 200 || body["status"] != "ready" {
		t.Fatalf("/readyz healthy = %d %v", rec.Code, body)
	}
	healthy = false
	rec, body := get("/readyz")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "RECONNECTING") {
		t.Fatalf("/readyz unhealthy = %d %s", rec.Code, rec.Body)
	}
	if body["checks"].(map[string]any)["nats"] != "nats RECONNECTING" {
		t.Fatalf("readiness body does not say what is wrong: %v", body)
	}
	if rec, _ := get("/metrics"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatalf("/metrics = %d", rec.Code)
	}
}

func TestRunServiceStopsBoth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ops.RunService(ctx, "127.0.0.1:0", http.NotFoundHandler(), discard(), func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("a requested stop returned %v", err)
	}
	// A failing main is reported.
	boom := errors.New("boom")
	if err := ops.RunService(context.Background(), "", http.NotFoundHandler(), discard(), func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("RunService = %v, want boom", err)
	}
}
