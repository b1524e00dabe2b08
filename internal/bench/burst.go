package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// eventsPerUser in a burst: a user's events must keep their order, on the
// stream (bus.Publish sends them in waves) and at the webhook.
const eventsPerUser = 4

// burstEvents builds n events of source for n/eventsPerUser users: each
// user registered, associated, updated and retired, as VPP users are.
func burstEvents(source string, n int) ([]events.Event, error) {
	observed := time.Now().UTC()
	evs := make([]events.Event, 0, n)
	users := (n + eventsPerUser - 1) / eventsPerUser
	for i := 0; len(evs) < n; i++ {
		id := strconv.Itoa(1_000_000 + i%users)
		step := i / users
		u := events.User{Source: source, SourceKind: events.KindVPP, ID: id,
			Email: "person" + id + "@school.example", ClientUserID: "client-" + id, Status: events.StatusRegistered}
		// As the poller publishes it: scrubbed of the invitation's code and
		// URL (events.ScrubRaw), the rest of Apple's record as it came.
		u.Raw = []byte(`{"userId":` + id + `,"email":"` + u.Email + `","clientUserIdStr":"` + u.ClientUserID + `","status":"Registered","itsIdHash":"C2Wwd8LcIaE2v6f2/mvu82Gs/Lc="}`)
		prev := u
		spec := events.Spec{PrevRevision: uint64(step), Observed: observed, Previous: &prev}
		switch step % eventsPerUser {
		case 0:
			spec.Type, spec.Reason, spec.Previous = events.TypeRegistered, events.ReasonNew, nil
		case 1:
			u.Status = events.StatusAssociated
			spec.Type, spec.Reason = events.TypeAssociated, events.ReasonStatus
			spec.Changes = []events.Change{{Field: "status", From: prev.Status, To: u.Status}}
		case 2:
			u.Email = "moved." + u.Email
			spec.Type, spec.Reason = events.TypeUpdated, events.ReasonFields
			spec.Changes = []events.Change{{Field: "email", From: prev.Email, To: u.Email}}
		case 3:
			u.Status = events.StatusRetired
			spec.Type, spec.Reason = events.TypeRetired, events.ReasonStatus
			spec.Changes = []events.Change{{Field: "status", From: prev.Status, To: u.Status}}
		}
		spec.User = u
		e, err := events.New(spec)
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// burst runs scenarios 3 and 4 against a server of their own.
func (r *runner) burst(ctx context.Context) error {
	n := r.cfg.Events
	r.progress("== burst of %s events (%d per user)", count(n), eventsPerUser)
	ne, err := startNATS(ctx, r.cfg.TempDir, r.cfg.NATSChild)
	if err != nil {
		return err
	}
	defer ne.close()
	if _, err := ne.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"},
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour}); err != nil {
		return err
	}
	var first []events.Event
	reps := r.cfg.Reps
	if !r.want(ScenarioPublish) {
		reps = 1
	}
	var floors, figs []sample
	for rep := range reps {
		// Every repetition publishes events of its own source, so that none
		// is a duplicate of an earlier one.
		source := fmt.Sprintf("burst%d", rep+1)
		evs, err := burstEvents(source, n)
		if err != nil {
			return err
		}
		if rep == 0 {
			first = evs
		}
		if !r.want(ScenarioPublish) {
			if _, err := bus.Publish(ctx, ne.js, evs); err != nil {
				return err
			}
			break
		}
		raw, err := rawMessages(evs)
		if err != nil {
			return err
		}
		r.progress("publish %d/%d: raw async publishes, then bus.Publish", rep+1, reps)
		f, err := measure(func() error { return rawPublish(ctx, ne.js, raw) })
		if err != nil {
			return fmt.Errorf("raw publish: %w", err)
		}
		raw = nil
		var res bus.PublishResult
		m, err := measure(func() error {
			var err error
			res, err = bus.Publish(ctx, ne.js, evs)
			return err
		})
		if err != nil {
			return fmt.Errorf("bus.Publish: %w", err)
		}
		if res.Stored != n {
			return fmt.Errorf("bus.Publish stored %d of %d events (%d duplicates)", res.Stored, n, res.Duplicates)
		}
		floors, figs = append(floors, f), append(figs, m)
		r.progress("  %.0f events/s (raw %.0f/s)", float64(n)/m.wall.Seconds(), float64(n)/f.wall.Seconds())
	}
	if r.want(ScenarioPublish) {
		f, m := median(floors), median(figs)
		rate, floor := float64(n)/m.wall.Seconds(), float64(n)/f.wall.Seconds()
		q, qs := ratio(rate, floor)
		r.add(Row{Scenario: "3 publish burst (bus.Publish)", Size: count(n) + " events", Figure: fmt.Sprintf("%.0f/s", rate), Floor: fmt.Sprintf("%.0f/s", floor),
			Ratio: qs, Target: "≥0.60×", Result: verdict(q >= 0.6),
			Note: fmt.Sprintf("%d users × %d events in per-user waves; CPU %s (floor %s); floor = PublishMsgAsync of the same headers and bodies without Nats-Msg-Id, then waiting for every ack%s", n/eventsPerUser, eventsPerUser, secs(m.cpu), secs(f.cpu), andSpread(floors, figs, true))})
	}
	if r.want(ScenarioDeliver) {
		return r.deliver(ctx, ne, first)
	}
	return nil
}

type rawMsg struct {
	subject string
	header  nats.Header
	data    []byte
}

// rawMessages are the events' messages with the same headers and bodies,
// minus the de-duplication id, on subjects of the benchmark's own stream.
func rawMessages(evs []events.Event) ([]rawMsg, error) {
	out := make([]rawMsg, len(evs))
	for i, e := range evs {
		m, err := bus.Msg(e)
		if err != nil {
			return nil, err
		}
		h := m.Header
		h.Del(events.HeaderMsgID)
		// Same subject length: the subject's tokens after the prefix.
		out[i] = rawMsg{subject: "bench.raw." + m.Subject[len(events.SubjectPrefix):], header: h, data: m.Data}
	}
	return out, nil
}

// rawPublish is the floor of scenario 3: every message async, then every ack.
func rawPublish(ctx context.Context, js jetstream.JetStream, msgs []rawMsg) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		for {
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: m.subject, Header: m.header, Data: m.data})
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue
			}
			if err != nil {
				return err
			}
			futures = append(futures, f)
			break
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// receiver is the local webhook endpoint: it counts deliveries and checks
// that each user's events arrive in the order they were published.
type receiver struct {
	srv     *httptest.Server
	checkOn atomic.Bool
	want    map[string][]string // user id → event ids in order
	total   int

	mu      sync.Mutex
	next    map[string]int
	got     int
	badOrd  int
	dups    int
	seen    map[string]bool
	done    chan struct{}
	counted atomic.Int64
}

func newReceiver(evs []events.Event) *receiver {
	rc := &receiver{want: map[string][]string{}, total: len(evs)}
	for _, e := range evs {
		rc.want[e.Subject()] = append(rc.want[e.Subject()], e.ID())
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rc.counted.Add(1)
		if rc.checkOn.Load() {
			rc.check(r.Header.Get("Ce-Subject"), r.Header.Get("Ce-Id"))
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return rc
}

func (rc *receiver) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.next, rc.seen = map[string]int{}, map[string]bool{}
	rc.got, rc.badOrd, rc.dups = 0, 0, 0
	rc.done = make(chan struct{})
}

func (rc *receiver) check(user, id string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.seen[id] {
		rc.dups++
		return
	}
	rc.seen[id] = true
	ids := rc.want[user]
	i := rc.next[user]
	if i >= len(ids) || ids[i] != id {
		rc.badOrd++
	}
	rc.next[user] = i + 1
	rc.got++
	if rc.got == rc.total {
		close(rc.done)
	}
}

// deliver is scenario 4: the notifier's webhook sink delivering the burst
// (per-user order kept) against plain POSTs of the same bodies.
func (r *runner) deliver(ctx context.Context, ne *natsEnv, evs []events.Event) error {
	n := len(evs)
	source := events.SourceName(evs[0])
	rc := newReceiver(evs)
	defer rc.srv.Close()
	conc := r.cfg.Concurrency

	type post struct {
		header http.Header
		body   []byte
	}
	posts := make([]post, n)
	for i, e := range evs {
		h, body, err := events.ToHeaders(e)
		if err != nil {
			return err
		}
		hh := http.Header{}
		for k, v := range h {
			hh[http.CanonicalHeaderKey(k)] = v
		}
		posts[i] = post{header: hh, body: body}
	}
	var floors, figs []sample
	reps := r.cfg.Reps
	for rep := range reps {
		r.progress("deliver %d/%d: plain POSTs (%d at a time), then the notifier's webhook sink", rep+1, reps, conc)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
		// The receiver does the same bookkeeping for the floor as for the
		// notifier, so that its cost is in both; only the notifier's
		// order is judged.
		rc.reset()
		rc.checkOn.Store(true)
		f, err := measure(func() error {
			work := make(chan int, conc)
			var wg sync.WaitGroup
			var failed atomic.Int64
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.srv.URL, bytes.NewReader(posts[i].body))
						if err != nil {
							failed.Add(1)
							continue
						}
						req.Header = posts[i].header.Clone()
						resp, err := hc.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode/100 != 2 {
							failed.Add(1)
						}
					}
				}()
			}
			for i := range posts {
				work <- i
			}
			close(work)
			wg.Wait()
			if f := failed.Load(); f > 0 {
				return fmt.Errorf("%d plain POSTs failed", f)
			}
			return nil
		})
		rc.checkOn.Store(false)
		hc.CloseIdleConnections()
		if err != nil {
			return err
		}
		sink, err := webhook.New(webhook.Config{Name: fmt.Sprintf("bench%d", rep+1), URL: rc.srv.URL})
		if err != nil {
			return err
		}
		rc.reset()
		rc.checkOn.Store(true)
		nt := notifier.New(ne.js, notifier.Config{Concurrency: conc}, notifier.Route{Sink: sink, Sources: []string{source}, Start: "all"})
		var runErr error
		s0 := ne.serverCPU()
		m, err := measure(func() error {
			nctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- nt.Run(nctx) }()
			select {
			case <-rc.done:
			case runErr = <-done:
				return fmt.Errorf("notifier stopped: %v", runErr)
			case <-time.After(30 * time.Minute):
				return errors.New("notifier did not deliver everything within 30 minutes")
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
		m.server = ne.serverCPU() - s0
		rc.checkOn.Store(false)
		if err != nil {
			return err
		}
		rc.mu.Lock()
		bad, dups := rc.badOrd, rc.dups
		rc.mu.Unlock()
		if bad > 0 {
			return fmt.Errorf("notifier: %d events arrived out of per-user order", bad)
		}
		floors, figs = append(floors, f), append(figs, m)
		r.progress("  %.0f deliveries/s (plain POSTs %.0f/s), %d redeliveries", float64(n)/m.wall.Seconds(), float64(n)/f.wall.Seconds(), dups)
	}
	f, m := median(floors), median(figs)
	rate, floor := float64(n)/m.wall.Seconds(), float64(n)/f.wall.Seconds()
	q, qs := ratio(rate, floor)
	r.add(Row{Scenario: "4 deliver to webhook (notifier)", Size: count(n) + " events", Figure: fmt.Sprintf("%.0f/s", rate), Floor: fmt.Sprintf("%.0f/s", floor),
		Ratio: qs, Target: "≥0.60×", Result: verdict(q >= 0.6),
		Note: fmt.Sprintf("SINK_CONCURRENCY=%d, binary mode, unsigned, per-user order checked at the receiver; CPU %s (floor %s), and the NATS server's %s beside it on the same cores (the floor needs none); floor = %d goroutines POSTing the same headers and bodies with a keep-alive client%s", conc, secs(m.cpu), secs(f.cpu), secs(m.server), conc, andSpread(floors, figs, true))})
	return nil
}
