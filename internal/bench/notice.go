package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// noticeInterval is the poll interval of scenario 7: short, so that many
// changes are timed in a minute; the figures scale to the defaults (see
// the row's note).
const noticeInterval = 2 * time.Second

// noticeJitter is poller.Config's default Jitter, which the scenario keeps.
const noticeJitter = 0.1

// arrival is a webhook delivery of an update, as the receiver saw it.
type arrival struct {
	observed, at time.Time // the event's time (the poller's observation) and its arrival
}

// noticeReceiver records the arrival of every user.updated event by user.
type noticeReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  map[string][]arrival
	wake chan struct{}
}

func newNoticeReceiver() *noticeReceiver {
	nr := &noticeReceiver{got: map[string][]arrival{}, wake: make(chan struct{}, 1)}
	nr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		observed, _ := time.Parse(time.RFC3339Nano, r.Header.Get("Ce-Time"))
		nr.mu.Lock()
		nr.got[r.Header.Get("Ce-Subject")] = append(nr.got[r.Header.Get("Ce-Subject")], arrival{observed: observed, at: at})
		nr.mu.Unlock()
		select {
		case nr.wake <- struct{}{}:
		default:
		}
	}))
	return nr
}

// await returns the first arrival for id observed after since.
func (nr *noticeReceiver) await(ctx context.Context, id string, since time.Time) (arrival, error) {
	for {
		nr.mu.Lock()
		for _, a := range nr.got[id] {
			if a.observed.After(since) {
				nr.mu.Unlock()
				return a, nil
			}
		}
		nr.mu.Unlock()
		select {
		case <-nr.wake:
		case <-ctx.Done():
			return arrival{}, ctx.Err()
		}
	}
}

// notice is scenario 7: the time from a change at the source to its
// webhook delivery, with the poller and the notifier running as services
// do (poller.Run on its interval with jitter, VPP incremental between full
// syncs, notifier.Run with the webhook sink). Each change is made at a
// random moment of the interval, so the waits for the next poll are
// sampled evenly. Measured at sizes up to 100k, where a run is short
// beside the interval.
func (r *runner) notice(ctx context.Context, e *sizeEnv) error {
	if e.n > 100_000 {
		r.progress("time to notice: measured at up to 100k users only")
		return nil
	}
	samples := 30
	if r.cfg.Quick {
		samples = 6
	}
	for _, s := range e.srcs {
		if _, err := e.floor(ctx, s); err != nil { // the current users, for changes that update
			return err
		}
		if err := r.noticeSource(ctx, e, s, samples); err != nil {
			return fmt.Errorf("time to notice %s: %w", s.name, err)
		}
	}
	return nil
}

func (r *runner) noticeSource(ctx context.Context, e *sizeEnv, s *source, samples int) error {
	nr := newNoticeReceiver()
	defer nr.srv.Close()
	sink, err := webhook.New(webhook.Config{Name: "notice-" + s.name, URL: nr.srv.URL})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runs sync.WaitGroup
	defer runs.Wait()
	defer cancel()
	ran := make(chan poller.Result, 64)
	p := poller.New(e.nats.js, e.nats.h, poller.Config{CommitTimeout: time.Minute, Jitter: noticeJitter,
		OnRun: func(_ string, res poller.Result, err error) {
			if err == nil {
				select {
				case ran <- res:
				default:
				}
			}
		}},
		poller.SourceConfig{Source: s.client, Interval: noticeInterval, FullSyncInterval: 24 * time.Hour})
	nt := notifier.New(e.nats.js, notifier.Config{}, notifier.Route{Sink: sink, Sources: []string{s.name}, Types: []string{events.TypeUpdated}, Start: "new"})
	errc := make(chan error, 2)
	for _, f := range []func(context.Context) error{p.Run, nt.Run} {
		runs.Add(1)
		go func() {
			defer runs.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	select { // the first run: from then on the poller is on its interval
	case <-ran:
	case err := <-errc:
		return err
	case <-time.After(2 * time.Minute):
		return errors.New("the poller made no run within 2 minutes")
	}
	r.progress("time to notice, %s: %d changes, each at a random moment of a %s poll interval", s.name, samples, noticeInterval)
	var total, wait, after []time.Duration
	var runDur []time.Duration
	rng := rand.New(rand.NewPCG(uint64(e.n), 16))
	for i := range samples {
		if err := sleepCtx(ctx, time.Duration(rng.Int64N(int64(noticeInterval)))); err != nil {
			return err
		}
		u := s.users[rng.IntN(len(s.users))]
		uid, ok := vppUserID(s.name, u.id)
		if !ok {
			continue
		}
		t0 := time.Now()
		if err := e.adm.do(ctx, http.MethodPost, "/admin/users/"+adminAPI(s.name), emailChange(s.name, uid, i)); err != nil {
			return err
		}
		actx, acancel := context.WithTimeout(ctx, 30*time.Second+4*noticeInterval)
		a, err := nr.await(actx, u.id, t0)
		acancel()
		if err != nil {
			return fmt.Errorf("change %d (user %s) never delivered: %w", i+1, u.id, err)
		}
		total, wait, after = append(total, a.at.Sub(t0)), append(wait, a.observed.Sub(t0)), append(after, a.at.Sub(a.observed))
	drain:
		for {
			select {
			case res := <-ran:
				runDur = append(runDur, res.Duration)
			default:
				break drain
			}
		}
	}
	p50, p99 := quantile(total, 0.5), quantile(total, 0.99)
	// The wait for the next poll alone, for changes at even moments of an
	// interval stretched by up to Jitter: its mean and near-worst case.
	w50, w99 := time.Duration(float64(noticeInterval)*(1+noticeJitter)/2), time.Duration(float64(noticeInterval)*(1+noticeJitter)*0.99)
	_, qs := ratio(p50.Seconds(), w50.Seconds())
	r.add(Row{Scenario: "7 time to notice " + s.name + ": change → webhook", Size: count(e.n),
		Figure: "p50 " + secs(p50) + ", p99 " + secs(p99), Floor: "p50 " + secs(w50) + ", p99 " + secs(w99), Ratio: qs, Result: "info",
		Note: fmt.Sprintf("poll interval %s with %.0f%% jitter (floor: the wait for the next poll alone); %d changes; change → observed by a run: p50 %s, p99 %s; observed → delivered (diff, confirm, publish, commit, notifier): p50 %s, p99 %s; runs took p50 %s. "+
			"With the defaults the wait dominates: VPP_INTERVAL=15m gives about p50 %s, p99 %s; VEEAM_INTERVAL=5m about p50 %s, p99 %s (wait + this size's run and delivery)",
			noticeInterval, noticeJitter*100, len(total), secs(quantile(wait, 0.5)), secs(quantile(wait, 0.99)), secs(quantile(after, 0.5)), secs(quantile(after, 0.99)), secs(quantile(runDur, 0.5)),
			minutes(15*time.Minute, 0.5, quantile(after, 0.5)), minutes(15*time.Minute, 0.99, quantile(after, 0.99)),
			minutes(5*time.Minute, 0.5, quantile(after, 0.5)), minutes(5*time.Minute, 0.99, quantile(after, 0.99)))})
	return nil
}

// minutes estimates a quantile of the time to notice at a poll interval:
// the wait's quantile plus the measured rest.
func minutes(interval time.Duration, q float64, rest time.Duration) string {
	d := time.Duration(float64(interval)*(1+noticeJitter)*q) + rest
	return fmt.Sprintf("%.1f min", d.Minutes())
}

// emailChange is the simulator admin request that changes a user's e-mail.
func emailChange(source, id string, i int) string {
	if source == "vpp" || source == "vpp2" {
		return fmt.Sprintf(`{"userId":%s,"email":"notice%d.%s@school.example"}`, id, i, id)
	}
	return fmt.Sprintf(`{"instanceUid":%q,"profile":{"email":"notice%d@msp.example"}}`, id, i)
}

// adminAPI is the simulator admin API that changes source's directory:
// vpp2 serves vpp's.
func adminAPI(source string) string {
	if source == "vpp2" {
		return "vpp"
	}
	return source
}

// quantile is the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)) + 0.5)
	return s[min(max(i-1, 0), len(s)-1)]
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
