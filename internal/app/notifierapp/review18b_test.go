package notifierapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestReview18bReplayAsOfSkipsUndecodable: a message on a source's
// subjects that is not a rollcall event must not take `replay --as-of`
// away: the directory of every other event is printed and stderr warns
// with the count, as the console's as-of page does.
func TestReview18bReplayAsOfSkipsUndecodable(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	trail(t, js)
	ctx := context.Background()
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: user("zed", "CompanyUser"), Reason: events.ReasonNew, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	m.Data = []byte(`{"user": not json`)
	m.Header.Del(jetstream.MsgIDHeader)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": srv.ClientURL()})
	var out, errOut bytes.Buffer
	err = notifierapp.Replay(ctx, []string{"--source", "veeam", "--as-of", "now"}, env, &out, &errOut)
	if err != nil {
		t.Fatalf("replay --as-of with one undecodable message: %v (stderr %q)", err, errOut.String())
	}
	var ids []string
	for _, l := range lines(out.String()) {
		var u events.User
		if err := json.Unmarshal([]byte(l), &u); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		ids = append(ids, u.ID)
	}
	if strings.Join(ids, ",") != "alice,carol" {
		t.Errorf("directory %v, want alice,carol", ids)
	}
	if !strings.Contains(errOut.String(), "skipped 1 ") {
		t.Errorf("stderr does not warn with the count: %q", errOut.String())
	}
}

// TestReview18bReplayAsOfYearOne: --as-of 0001-01-01 is Go's zero time,
// which the command read as no --as-of at all: it replayed the whole
// trail as events where a directory was asked for. Any other time before
// the first snapshot says nothing is known then.
func TestReview18bReplayAsOfYearOne(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	trail(t, js)
	env := envconfig.MapLookuper(map[string]string{"NATS_URL": srv.ClientURL()})
	for _, at := range []string{"0001-01-01", "0001-01-01T00:00:00Z"} {
		var out, errOut bytes.Buffer
		err := notifierapp.Replay(context.Background(), []string{"--source", "veeam", "--as-of", at}, env, &out, &errOut)
		if err == nil || strings.Contains(out.String(), `"type"`) {
			t.Errorf("--as-of %s: err %v, printed %q", at, err, out.String())
		}
	}
}
