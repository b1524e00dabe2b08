package poller_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// A stop requested while a run is committing lets the commit finish (the
// grace of write): its events are published and its state written. The
// loop then returns at once, so the run that did all this never logs its
// one info line: the operator's log shows no trace of the events the last
// run published.
func TestReview15cRunCommittedDuringStopLogsNoRunLine(t *testing.T) {
	e := setup(t, poller.Config{})
	ve := httptest.NewServer(e.veeam)
	t.Cleanup(ve.Close)
	seed := poller.New(e.js, e.h, poller.Config{}, veeamSC(t, ve.URL))
	if _, err := seed.RunOnce(context.Background(), "veeam"); err != nil {
		t.Fatal(err)
	}
	for _, u := range e.veeam.Users() {
		u.Role = "companyAdministrator"
		e.veeam.Put(u)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncbuf.Buffer{}
	var mu sync.Mutex
	var results []poller.Result
	var errs []error
	p := poller.New(e.js, e.h, poller.Config{
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
		ShutdownGrace: 5 * time.Second,
		Fault: func(point string) error {
			if point == poller.FaultBeforeWrite {
				cancel() // SIGTERM arrives while the run commits
			}
			return nil
		},
		OnRun: func(_ string, res poller.Result, err error) {
			mu.Lock()
			results, errs = append(results, res), append(errs, err)
			mu.Unlock()
		},
	}, veeamSC(t, ve.URL))
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(results) != 1 || errs[0] != nil || results[0].Events == 0 {
		t.Skipf("scenario not reached: %d runs, errs %v", len(results), errs)
	}
	for l := range strings.Lines(logs.String()) {
		var rec struct {
			Level, Run string
			Events     *int `json:"events"`
		}
		_ = json.Unmarshal([]byte(l), &rec)
		if rec.Level == "INFO" && rec.Run == results[0].ID && rec.Events != nil {
			return
		}
	}
	t.Errorf("run %s published %d events and wrote its state, but logged no info line:\n%s", results[0].ID, results[0].Events, logs)
}
