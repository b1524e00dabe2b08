package notifierapp_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

func notifierEnv(url string, env map[string]string) envconfig.Lookuper {
	full := map[string]string{"NATS_URL": url, "HTTP_ADDR": "", "ALLOW_INSECURE_HTTP": "true", "CONSOLE": "false"}
	for k, v := range env {
		full[k] = v
	}
	return envconfig.MapLookuper(full)
}

// startNotifier runs the notifier with env (NATS_URL and
// ALLOW_INSECURE_HTTP added) until ready holds; stop ends it and returns
// its exit error.
func startNotifier(t *testing.T, url string, env map[string]string, ready func() error) (logs *syncbuf.Buffer, stop func() error) {
	t.Helper()
	logs = &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notifierapp.Run(ctx, notifierEnv(url, env), io.Discard, logs) }()
	testutil.CheckFor(t, 20*time.Second, "notifier ready", func() error {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the notifier stopped: %v\n%s", err, logs)
		default:
		}
		return ready()
	})
	return logs, func() error { cancel(); return <-done }
}

// refused runs the notifier with env and returns the error it stops with;
// it fails the test if it keeps running.
func refused(t *testing.T, url string, env map[string]string) (*syncbuf.Buffer, error) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := notifierapp.Run(ctx, notifierEnv(url, env), io.Discard, logs)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("the notifier was not refused (error %v)", err)
	}
	return logs, err
}

func endpoints(t *testing.T, js jetstream.JetStream, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		c, err := js.Consumer(context.Background(), bus.EventsStream, n)
		if err != nil {
			t.Fatalf("consumer %s: %v", n, err)
		}
		out[n] = c.CachedInfo().Config.Metadata["rollcall_endpoint"]
	}
	return out
}

// hasEndpoints is a readiness check: every named consumer exists and
// records its endpoint (it is set up, or moved, by this start).
func hasEndpoints(js jetstream.JetStream, want map[string]string) func() error {
	return func() error {
		for n, id := range want {
			c, err := js.Consumer(context.Background(), bus.EventsStream, n)
			if err != nil {
				return err
			}
			if got := c.CachedInfo().Config.Metadata["rollcall_endpoint"]; got == "" || id != "" && got != id {
				return fmt.Errorf("consumer %s endpoint %q, want %q", n, got, id)
			}
		}
		return nil
	}
}

// Issue 15 point 4: reordering WEBHOOK_URL would hand one receiver's
// consumer, and its place in the stream, to another. The notifier refuses
// to start, changes nothing, says what to do, and moves the consumers only
// when told to.
func TestReorderedWebhooksAreRefused(t *testing.T) {
	srv, js := eventStreams(t)
	const a, b = "http://crm.example:8080/in/TOKEN-AAAAAAAAAAAAAAAA", "http://hr.example:8080/in/TOKEN-BBBBBBBBBBBBBBBB"
	_, stop := startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": a + "," + b}, hasEndpoints(js, map[string]string{"webhook": "", "webhook-2": ""}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before := endpoints(t, js, "webhook", "webhook-2")
	if before["webhook"] == "" || before["webhook"] == before["webhook-2"] {
		t.Fatalf("consumers do not record their endpoints: %v", before)
	}

	logs, err := refused(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": b + "," + a})
	var ec *notifier.EndpointChangedError
	if !errors.As(err, &ec) {
		t.Fatalf("error %v is not an EndpointChangedError", err)
	}
	for _, want := range []string{"webhook", "webhook-2", "crm.example:8080", "hr.example:8080", "ALLOW_ENDPOINT_CHANGE=webhook,webhook-2", "WEBHOOKS", "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	for _, secret := range []string{"TOKEN-", "/in/"} {
		if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("the URL path (%s) leaked:\n%v\n%s", secret, err, logs)
		}
	}
	if after := endpoints(t, js, "webhook", "webhook-2"); after["webhook"] != before["webhook"] || after["webhook-2"] != before["webhook-2"] {
		t.Errorf("a refused start changed the consumers: %v, was %v", after, before)
	}

	// Told to, it moves them.
	_, stop = startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": b + "," + a, "ALLOW_ENDPOINT_CHANGE": "webhook,webhook-2"},
		hasEndpoints(js, map[string]string{"webhook": before["webhook-2"], "webhook-2": before["webhook"]}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// And then the new order is the known one: no flag needed.
	_, stop = startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": b + "," + a}, hasEndpoints(js, map[string]string{"webhook": "", "webhook-2": ""}))
	if err := stop(); err != nil {
		t.Fatalf("the moved consumers are refused again: %v", err)
	}
}

// A consumer made by an older notifier, which stored no endpoint, is
// adopted rather than refused.
func TestConsumerWithoutEndpointIsAdopted(t *testing.T) {
	srv, js := eventStreams(t)
	if _, err := js.CreateConsumer(context.Background(), bus.EventsStream, jetstream.ConsumerConfig{
		Durable: "webhook", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	_, stop := startNotifier(t, srv.ClientURL(), map[string]string{"WEBHOOK_URL": "http://crm.example/x"}, hasEndpoints(js, map[string]string{"webhook": ""}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Named webhooks (WEBHOOKS=crm,hr) each have their own URL, secret and
// types, keep their consumers whatever their order, are logged by name and
// host only, and an unsigned one is warned about.
func TestNamedWebhooks(t *testing.T) {
	srv, js := eventStreams(t)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("crm-secret-0123456789"))
	type hit struct {
		path, sig string
	}
	hits := make(chan hit, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- hit{r.URL.Path, r.Header.Get("webhook-signature")}
	}))
	defer rcv.Close()
	env := map[string]string{
		"WEBHOOKS":              "crm,hr",
		"WEBHOOK_CRM_URL":       rcv.URL + "/crm/PATHTOKEN1234567",
		"WEBHOOK_CRM_SECRET":    secret,
		"WEBHOOK_HR_URL":        rcv.URL + "/hr",
		"WEBHOOK_HR_TYPES":      "user.retired",
		"LOG_FORMAT":            "text",
		"SINK_START":            "all",
		"ALLOW_ENDPOINT_CHANGE": "",
	}
	logs, stop := startNotifier(t, srv.ClientURL(), env, hasEndpoints(js, map[string]string{"crm": "", "hr": ""}))
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "7", Status: "registered"}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, e)
	select {
	case h := <-hits:
		if h.path != "/crm/PATHTOKEN1234567" || h.sig == "" {
			t.Errorf("registration went to %s signed %q; want the crm URL, signed", h.path, h.sig)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("crm got nothing")
	}
	select {
	case h := <-hits:
		t.Errorf("hr, filtered to retirements, got %s", h.path)
	case <-time.After(300 * time.Millisecond):
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	host := strings.TrimPrefix(rcv.URL, "http://")
	for _, want := range []string{"sink=crm endpoint=" + host, "sink=hr endpoint=" + host} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PATHTOKEN") {
		t.Errorf("the URL path reached the logs:\n%s", out)
	}
	if !strings.Contains(out, "level=WARN msg=\"webhook deliveries are unsigned") || !strings.Contains(out, "unsigned: a receiver cannot tell them from forged requests; set WEBHOOK_SECRET (or the webhook's own _SECRET) to a whsec_ secret (README.md, Webhook signatures)\" sink=hr") {
		t.Errorf("no warning about the unsigned hr webhook:\n%s", out)
	}
	if strings.Count(out, "unsigned") != 1 {
		t.Errorf("want one unsigned warning (hr's), got:\n%s", out)
	}

	// Reordered, the named webhooks keep their consumers: no refusal.
	env["WEBHOOKS"] = "hr,crm"
	_, stop = startNotifier(t, srv.ClientURL(), env, hasEndpoints(js, map[string]string{"crm": "", "hr": ""}))
	if err := stop(); err != nil {
		t.Fatalf("reordering WEBHOOKS was refused: %v", err)
	}
}

func TestNamedWebhookConfigErrors(t *testing.T) {
	const u = "https://crm.example/in/SECRETPATH-0123456789"
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"both forms", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "WEBHOOK_URL": u}, []string{"WEBHOOKS", "WEBHOOK_URL"}},
		{"positional override with names", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "WEBHOOK_1_TYPES": "user.retired"}, []string{"WEBHOOK_1_", "WEBHOOK_<NAME>_TYPES"}},
		{"missing url", map[string]string{"WEBHOOKS": "crm,hr", "WEBHOOK_CRM_URL": u}, []string{`"hr"`, "WEBHOOK_HR_URL"}},
		{"bad name", map[string]string{"WEBHOOKS": "CRM!", "WEBHOOK_CRM_URL": u}, []string{"WEBHOOKS", `"CRM!"`}},
		{"reserved name", map[string]string{"WEBHOOKS": "slack", "WEBHOOK_SLACK_URL": u}, []string{"WEBHOOKS", "reserved"}},
		{"positional name", map[string]string{"WEBHOOKS": "webhook-2", "WEBHOOK_WEBHOOK_2_URL": u}, []string{"reserved"}},
		{"names sharing variables", map[string]string{"WEBHOOKS": "a-b,a_b", "WEBHOOK_A_B_URL": u}, []string{"WEBHOOK_A_B_"}},
		{"empty entry", map[string]string{"WEBHOOKS": "crm,,hr", "WEBHOOK_CRM_URL": u}, []string{"WEBHOOKS", "entry 2"}},
		{"bad own secret", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "WEBHOOK_CRM_SECRET": "nope-not-whsec"}, []string{"WEBHOOK_CRM_SECRET"}},
		{"bad own types", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "WEBHOOK_CRM_TYPES": "user.left"}, []string{"WEBHOOK_CRM_TYPES"}},
		{"cleartext", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": "http://crm.example/x"}, []string{"WEBHOOK_CRM_URL", "ALLOW_INSECURE_HTTP"}},
		{"allow change of no sink", map[string]string{"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": u, "ALLOW_ENDPOINT_CHANGE": "crn"}, []string{"ALLOW_ENDPOINT_CHANGE", `"crn"`, "crm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			env := map[string]string{"CONSOLE": "false"}
			for k, v := range tt.env {
				env[k] = v
			}
			logs := &syncbuf.Buffer{}
			err := notifierapp.Run(ctx, envconfig.MapLookuper(env), io.Discard, logs)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %s", err, w)
				}
			}
			if strings.Contains(err.Error()+logs.String(), "SECRETPATH") || strings.Contains(err.Error(), "nope-not-whsec") {
				t.Errorf("a secret leaked: %v", err)
			}
		})
	}
}

// replay --to webhook sends to named webhooks too: they are webhooks by
// kind, whatever their names.
func TestReplayToNamedWebhook(t *testing.T) {
	srv, js := eventStreams(t)
	e, err := events.New(events.Spec{Type: events.TypeRetired, User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "9", Status: "retired"}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, e)
	got := make(chan string, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.URL.Path }))
	defer rcv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = notifierapp.Replay(ctx, []string{"--to", "webhook"}, notifierEnv(srv.ClientURL(), map[string]string{
		"WEBHOOKS": "crm", "WEBHOOK_CRM_URL": rcv.URL + "/crm",
	}), io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "/crm" {
			t.Errorf("replayed to %s", p)
		}
	default:
		t.Fatal("the named webhook got nothing")
	}
}

// eventStreams starts an embedded NATS server with the streams and buckets
// the poller would have created.
func eventStreams(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	if _, err := bus.Ensure(context.Background(), js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

// publish puts e on the event stream as the poller does.
func publish(t *testing.T, js jetstream.JetStream, e events.Event) {
	t.Helper()
	m, err := bus.Msg(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}
