// Package testutil holds the small helpers the integration tests share:
// polling for a condition instead of sleeping, and free loopback addresses.
package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CheckFor polls cond every 25ms until it returns nil, failing the test
// with cond's last error when timeout passes.
func CheckFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	CheckEvery(t, timeout, 25*time.Millisecond, what, cond)
}

// CheckEvery is CheckFor polling every interval, for conditions that are
// costly to ask (a command per poll) and change slowly.
func CheckEvery(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(interval)
	}
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Metric fetches http://addr/metrics and returns the value of one series,
// written as the exposition format writes it (labels sorted by name), e.g.
// `rollcall_sink_dead_letters_total{sink="webhook"}`. A series that is not
// there is an error, so CheckFor can wait for it.
func Metric(addr, series string) (float64, error) {
	m, err := Metrics(addr)
	if err != nil {
		return 0, err
	}
	v, ok := m[series]
	if !ok {
		return 0, fmt.Errorf("no series %s on /metrics", series)
	}
	return v, nil
}

// Metrics fetches http://addr/metrics as series → value, each series
// written as the exposition format writes it (labels sorted by name).
func Metrics(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, nil
}

// MetricAtLeast waits (see CheckFor) until series reaches min.
func MetricAtLeast(t testing.TB, timeout time.Duration, addr, series string, min float64) {
	t.Helper()
	CheckFor(t, timeout, series+" >= "+strconv.FormatFloat(min, 'g', -1, 64), func() error {
		v, err := Metric(addr, series)
		if err != nil {
			return err
		}
		if v < min {
			return fmt.Errorf("%s is %v", series, v)
		}
		return nil
	})
}
