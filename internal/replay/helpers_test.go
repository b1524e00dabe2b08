package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/diff"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// world drives the bus the way the poller does: a source's first complete
// snapshot is stored silently as its baseline, every later snapshot goes
// through diff.Compute and bus.Publish, and the state (with increasing
// revisions, as the users bucket would give) feeds the next diff.
type world struct {
	t     testing.TB
	js    jetstream.JetStream
	h     *bus.Handles
	kinds map[string]string
	prev  map[string]map[string]diff.Prev
	rev   uint64
}

func newWorld(t testing.TB) *world {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(context.Background(), js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, js: js, h: h, kinds: map[string]string{}, prev: map[string]map[string]diff.Prev{}}
}

// seed stores a source's first complete snapshot as the poller does: the
// baseline object (a JSON array of users) and the state, no events.
func (w *world) seed(source, kind string, snap []events.User) {
	w.t.Helper()
	w.kinds[source] = kind
	w.prev[source] = map[string]diff.Prev{}
	d := w.compute(source, snap, time.Now())
	b, err := json.Marshal(snap)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.h.Baselines.Put(context.Background(), jetstream.ObjectMeta{Name: source, Description: "first complete snapshot of " + source}, bytes.NewReader(b)); err != nil {
		w.t.Fatal(err)
	}
	w.commit(source, d)
}

// step observes a later complete snapshot of source at observed, publishes
// its events and commits the state. It returns the events published.
func (w *world) step(source string, snap []events.User, observed time.Time) []events.Event {
	w.t.Helper()
	d := w.compute(source, snap, observed)
	res, err := bus.Publish(context.Background(), w.js, d.Events)
	if err != nil {
		w.t.Fatal(err)
	}
	if res.Stored != len(d.Events) {
		w.t.Fatalf("step %s: stored %d of %d events", source, res.Stored, len(d.Events))
	}
	w.commit(source, d)
	return d.Events
}

func (w *world) compute(source string, snap []events.User, observed time.Time) diff.Result {
	w.t.Helper()
	d, err := diff.Compute(diff.Input{Source: source, Kind: w.kinds[source], Previous: w.prev[source],
		Snapshot: snap, Complete: true, Observed: observed})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) commit(source string, d diff.Result) {
	for _, wr := range d.Writes {
		w.rev++
		w.prev[source][wr.User.ID] = diff.Prev{User: wr.User, Revision: w.rev}
	}
}

// stored is one message of the stream, read directly by sequence: the
// ground truth a replay is checked against.
type stored struct {
	Seq   uint64
	Event events.Event
}

func streamEvents(t testing.TB, js jetstream.JetStream) []stored {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		e, err := events.FromHeaders(events.Headers(m.Header), m.Data)
		if err != nil {
			continue // not an event; tests that publish such say so
		}
		out = append(out, stored{Seq: seq, Event: e})
	}
	return out
}

func vppUser(source string, id int, status, email string) events.User {
	raw := fmt.Sprintf(`{"userId":%d,"email":%q,"status":%q}`, id, email, strings.ToUpper(status[:1])+status[1:])
	return events.User{Source: source, SourceKind: events.KindVPP, ID: fmt.Sprint(id), Email: email,
		Status: status, Raw: json.RawMessage(raw)}
}

func veeamUser(source, id, name, role, status string) events.User {
	raw := fmt.Sprintf(`{"instanceUid":%q,"userName":%q,"role":%q,"status":%q}`, id, name, role, status)
	return events.User{Source: source, SourceKind: events.KindVeeam, ID: id, UserName: name,
		Role: role, Status: strings.ToLower(status), Raw: json.RawMessage(raw)}
}

// collect is a Sink that keeps what it is sent; onSend, when set, runs
// before each event is kept and may fail it.
type collect struct {
	mu     sync.Mutex
	evs    []events.Event
	onSend func(n int, e events.Event) error
}

func (c *collect) Send(ctx context.Context, e events.Event) error {
	c.mu.Lock()
	n := len(c.evs)
	c.mu.Unlock()
	if c.onSend != nil {
		if err := c.onSend(n, e); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, e)
	return nil
}

func (c *collect) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.evs))
	for i, e := range c.evs {
		out[i] = e.ID()
	}
	return out
}

func idsOf(evs []stored, keep func(events.Event) bool) []string {
	out := []string{}
	for _, s := range evs {
		if keep(s.Event) {
			out = append(out, s.Event.ID())
		}
	}
	return out
}

func sameIDs(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) == 0 {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replayed %d events, want %d in stream order\n got: %v\nwant: %v", len(got), len(want), got, want)
	}
}
