package notifierapp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/pkg/events"
)

// Review 15b: the notifier refuses to start when WEBHOOK_URL is reordered
// (sink webhook's consumer delivered to crm, the configuration now gives it
// hr), but `notifier deadletter redrive --sink webhook` with the very same
// configuration sends crm's dead letters to hr: the handover point 4 of the
// issue forbids happens through redrive, silently, and the dead letters are
// removed as "delivered".
func TestReview15bRedriveFollowsReorderedURL(t *testing.T) {
	srv, js := eventStreams(t)
	var crmHits, hrHits atomic.Int32
	crm := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { crmHits.Add(1) }))
	defer crm.Close()
	hr := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hrHits.Add(1) }))
	defer hr.Close()
	a, b := crm.URL+"/crm/in", hr.URL+"/hr/in"

	// A first start records which endpoint each consumer delivers to.
	_, stop := startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": a + "," + b},
		hasEndpoints(js, map[string]string{"webhook": "", "webhook-2": ""}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The crm receiver refused an event: a dead letter of sink webhook.
	deadLetters(t, js, "webhook", 1)

	// The list reordered: the notifier itself refuses ...
	if _, err := refused(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": b + "," + a}); err == nil {
		t.Fatal("not refused")
	}
	// ... but a redrive with the same configuration goes ahead.
	env := map[string]string{"NATS_URL": srv.ClientURL(), "WEBHOOK_URL": b + "," + a, "ALLOW_INSECURE_HTTP": "true"}
	_, _, err := deadLetterCmd(env)("redrive", "--sink", "webhook")
	if n := hrHits.Load(); n > 0 {
		t.Errorf("crm's dead letter was redriven to the hr endpoint (%d posts; redrive error %v)", n, err)
	}
	if err == nil {
		t.Errorf("redrive of sink webhook, whose consumer delivers to %s, to %s was not refused", crm.Listener.Addr(), hr.Listener.Addr())
	}
	if entries, _ := deadletter.List(context.Background(), js, "webhook"); len(entries) != 1 {
		t.Errorf("%d dead letters of webhook left, want the 1 kept for crm", len(entries))
	}
}

// Review 15b (issue point 5: errors name the variable): a webhook secret
// read from a _SECRET_FILE that is not in whsec_ form is reported under the
// URL's variable (WEBHOOK_CRM_URL, WEBHOOK_URL #1), not the variable that
// holds it. webhookSpec even records secVar, which is never used.
func TestReview15bSecretFileErrorNamesItsVariable(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "secret")
	if err := os.WriteFile(bad, []byte("not-a-whsec-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const u = "https://crm.example/in/SECRETPATH-0123456789"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"named own secret file", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "WEBHOOK_CRM_SECRET_FILE": bad}, "WEBHOOK_CRM_SECRET_FILE"},
		{"shared secret file, named", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "WEBHOOK_SECRET_FILE": bad}, "WEBHOOK_SECRET_FILE"},
		{"shared secret file, positional", map[string]string{"WEBHOOK_URL": u, "WEBHOOK_SECRET_FILE": bad}, "WEBHOOK_SECRET_FILE"},
		{"override secret file", map[string]string{"WEBHOOK_URL": u, "WEBHOOK_1_SECRET_FILE": bad}, "WEBHOOK_1_SECRET_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			env := map[string]string{"CONSOLE": "false", "HTTP_ADDR": ""}
			for k, v := range tc.env {
				env[k] = v
			}
			err := notifierapp.Run(ctx, envconfig.MapLookuper(env), io.Discard, &syncbuf.Buffer{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "not-a-whsec") || strings.Contains(err.Error(), "SECRETPATH") {
				t.Errorf("a secret leaked: %v", err)
			}
		})
	}
}

// Review 15b: a rotated Slack webhook URL stops the notifier (by design),
// but the hint it prints is about reordering WEBHOOK_URL and naming
// webhooks with WEBHOOKS, which has nothing to do with the Slack sink.
func TestReview15bSlackURLChangeHint(t *testing.T) {
	srv, js := eventStreams(t)
	rcv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer rcv.Close()
	_, stop := startNotifier(t, srv.ClientURL(), map[string]string{"SLACK_WEBHOOK_URL": rcv.URL + "/services/T0/B0/OLDTOKENOLDTOKEN"},
		hasEndpoints(js, map[string]string{"slack": ""}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, err := refused(t, srv.ClientURL(), map[string]string{"SLACK_WEBHOOK_URL": rcv.URL + "/services/T0/B0/NEWTOKENNEWTOKEN"})
	if strings.Contains(err.Error(), "TOKEN") {
		t.Fatalf("the Slack token leaked: %v", err)
	}
	if strings.Contains(err.Error(), "WEBHOOK_URL was reordered") || strings.Contains(err.Error(), "name each webhook with WEBHOOKS") {
		t.Errorf("a Slack URL change is explained as a reordered WEBHOOK_URL:\n%v", err)
	}
}

// Review 15b: moving from WEBHOOK_URL to WEBHOOKS (what the README asks
// operators to prefer) with the same receiver URL gives the webhook a new
// consumer; the README's "SINK_START=new" loses every event published while
// the notifier was down for the switch, and the old consumer's backlog
// (events the receiver had not taken yet) is abandoned whatever SINK_START
// says. The endpoint identity already recorded on the old consumer would
// let the notifier carry the position over (or let WEBHOOKS keep the name
// "webhook" for the same endpoint), so nothing is lost.
func TestReview15bSwitchToNamedWebhookLosesEvents(t *testing.T) {
	srv, js := eventStreams(t)
	got := make(chan string, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("ce-subject")
	}))
	defer rcv.Close()
	u := rcv.URL + "/crm/in"
	_, stop := startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": u}, hasEndpoints(js, map[string]string{"webhook": ""}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// While the notifier is down for the switch, a user retires.
	e, err := events.New(events.Spec{Type: events.TypeRetired, User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "42", Status: "retired"}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, e)
	// The switch, as the README says: same URL, named, SINK_START=new.
	_, stop = startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "SINK_START": "new"},
		hasEndpoints(js, map[string]string{"crm": ""}))
	defer stop()
	select {
	case s := <-got:
		if s != "42" {
			t.Errorf("got %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Error("the retirement published during the switch to WEBHOOKS never reached the (same) receiver")
	}
}
