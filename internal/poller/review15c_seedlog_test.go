package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// A first run that crashed part-way through its writes (the poller was
// killed) leaves some users written and the source not yet seeded. The
// next run is again a "first run": it publishes the real changes of the
// users the crashed seed had reached (run.go compute), yet its one info
// line says "seeded the source's users silently, no events". The operator
// reads "no events" beside events=N.
func TestReview15cReSeedAfterCrashSaysNoEventsButPublishes(t *testing.T) {
	e := setup(t, poller.Config{})
	ve := httptest.NewServer(e.veeam)
	t.Cleanup(ve.Close)
	// First run: crash after one user is written.
	var writes atomic.Int32
	crashing := poller.New(e.js, e.h, poller.Config{Fault: func(point string) error {
		if point == poller.FaultMidWrite && writes.Add(1) > 1 {
			return errors.New("killed")
		}
		return nil
	}}, veeamSC(t, ve.URL))
	if _, err := crashing.RunOnce(context.Background(), "veeam"); err == nil {
		t.Fatal("the crashing seed succeeded")
	}
	// Every user changes role meanwhile.
	for _, u := range e.veeam.Users() {
		u.Role = "companyAdministrator"
		e.veeam.Put(u)
	}
	logs := &syncbuf.Buffer{}
	p := poller.New(e.js, e.h, poller.Config{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, veeamSC(t, ve.URL))
	res, err := p.RunOnce(context.Background(), "veeam")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Seeded || res.Events == 0 {
		t.Skipf("scenario not reached: seeded=%v events=%d", res.Seeded, res.Events)
	}
	for l := range strings.Lines(logs.String()) {
		var rec struct {
			Level, Msg string
			Events     *int `json:"events"`
		}
		_ = json.Unmarshal([]byte(l), &rec)
		if rec.Level == "INFO" && rec.Events != nil {
			if strings.Contains(rec.Msg, "no events") && *rec.Events > 0 {
				t.Errorf("the run line claims no events while it published %d:\n%s", *rec.Events, l)
			}
		}
	}
}

// veeamSC is a Veeam source on url, as setup builds it.
func veeamSC(t *testing.T, url string) poller.SourceConfig {
	t.Helper()
	wc, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: url, Token: "api-key", PageSize: 2, Backoff: fast, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return poller.SourceConfig{Source: wc, Interval: time.Hour}
}
