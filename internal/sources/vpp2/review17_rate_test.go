package vpp2_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources/vpp2"
)

// review17 (holds): limits.maxRequestPerSecond from the service
// configuration paces every request, lookups included, even with the
// client's own default set far higher.
func TestReview17ServiceConfigRateObeyed(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mdm/v2/service/config" {
			_, _ = w.Write([]byte(`{"limits":{"maxRequestPerSecond":5}}`))
			return
		}
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		_, _ = w.Write([]byte(onePage("v1")))
	}))
	t.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: srv.URL + "/mdm/v2", SToken: testSToken,
		Backoff: fast, MaxRequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = c.LookupUser(ctx, "bob") }()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 8 {
		t.Fatalf("%d requests", len(at))
	}
	first, last := at[0], at[0]
	for _, x := range at {
		if x.Before(first) {
			first = x
		}
		if x.After(last) {
			last = x
		}
	}
	if span := last.Sub(first); span < 1300*time.Millisecond {
		t.Errorf("8 requests in %v at a limit of 5 a second", span)
	}
}
