package notifierapp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/notifier"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/pkg/events"
)

// sourceRule is what every bad source name's error must explain.
const sourceRule = "lower-case letters, digits, '-' or '_', starting with a letter"

// badFilters are the sink filters that once started the notifier and then
// rewrote a sink's consumer to match nothing. Each must stop Load with an
// error that names the variable and the value and says what is valid.
var badFilters = []struct {
	name string
	env  map[string]string
	want []string // in the error, besides every valid type for a types variable
}{
	{"misspelt webhook type", map[string]string{"WEBHOOK_TYPES": "user.retierd"},
		[]string{`WEBHOOK_TYPES "user.retierd"`, `unknown event type "user.retierd"`}},
	{"slack type without its prefix", map[string]string{"SLACK_TYPES": "retired"},
		[]string{`SLACK_TYPES "retired"`, `unknown event type "retired"`}},
	{"type in the wrong case", map[string]string{"WEBHOOK_TYPES": "user.registered,user.rolechanged"},
		[]string{`WEBHOOK_TYPES "user.registered,user.rolechanged"`, `"user.rolechanged"`}},
	{"impossible source name", map[string]string{"SINK_SOURCES": "Bad.Name"},
		[]string{`SINK_SOURCES "Bad.Name"`, `"Bad.Name" is not a possible source name`, sourceRule}},
	{"upper-case source name", map[string]string{"SINK_SOURCES": "vpp, VEEAM"},
		[]string{`SINK_SOURCES "vpp, VEEAM"`, `"VEEAM"`, sourceRule}},
	{"wildcard source", map[string]string{"SINK_SOURCES": "*"},
		[]string{`SINK_SOURCES "*"`, sourceRule}},
	{"trailing comma", map[string]string{"WEBHOOK_TYPES": "user.registered,"},
		[]string{`WEBHOOK_TYPES "user.registered,"`, "entry 2 is empty"}},
	{"doubled comma in sources", map[string]string{"SINK_SOURCES": "vpp,,veeam"},
		[]string{`SINK_SOURCES "vpp,,veeam"`, "entry 2 is empty", "source names"}},
	{"per-url type misspelt", map[string]string{"WEBHOOK_URL": "https://a.example/h,https://b.example/h", "WEBHOOK_2_TYPES": "user.retierd"},
		[]string{`WEBHOOK_2_TYPES "user.retierd"`, `unknown event type "user.retierd"`}},
	{"per-url trailing comma", map[string]string{"WEBHOOK_URL": "https://a.example/h", "WEBHOOK_1_TYPES": "user.retired, "},
		[]string{`WEBHOOK_1_TYPES "user.retired, "`, "entry 2 is empty"}},
}

func TestFilterErrors(t *testing.T) {
	for _, tt := range badFilters {
		t.Run(tt.name, func(t *testing.T) {
			_, err := notifierapp.Load(context.Background(), envconfig.MapLookuper(tt.env))
			if err == nil {
				t.Fatal("Load accepted a bad filter")
			}
			want := tt.want
			if !strings.Contains(tt.want[0], "SINK_SOURCES") {
				want = append(slices.Clone(want), events.Types...)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

// Spaces around an entry are dropped ("user.registered, user.retired" means
// what it says), a blank value is no filter, and repeats count once.
func TestFilterLists(t *testing.T) {
	tests := []struct {
		name              string
		env               map[string]string
		webhook, slack    []string
		sources, webhook2 []string
	}{
		{"unset", map[string]string{}, nil, nil, nil, nil},
		{"space after the comma", map[string]string{"WEBHOOK_TYPES": "user.registered, user.retired", "SINK_SOURCES": "vpp, veeam-eu"},
			[]string{"user.registered", "user.retired"}, nil, []string{"vpp", "veeam-eu"}, nil},
		{"spaces, tabs and newlines", map[string]string{"SLACK_TYPES": " user.retired ,\tuser.roleChanged\n"},
			nil, []string{"user.retired", "user.roleChanged"}, nil, nil},
		{"blank is every event", map[string]string{"WEBHOOK_TYPES": "  ", "SINK_SOURCES": ""}, nil, nil, nil, nil},
		{"repeats count once", map[string]string{"WEBHOOK_TYPES": "user.retired,user.retired, user.updated", "SINK_SOURCES": "vpp,vpp"},
			[]string{"user.retired", "user.updated"}, nil, []string{"vpp"}, nil},
		{"per-url types", map[string]string{"WEBHOOK_URL": "https://a.example/h,https://b.example/h", "WEBHOOK_2_TYPES": "user.retired, user.updated"},
			nil, nil, nil, []string{"user.retired", "user.updated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := notifierapp.Load(context.Background(), envconfig.MapLookuper(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name      string
				got, want []string
			}{
				{"WEBHOOK_TYPES", cfg.WebhookTypes, tt.webhook},
				{"SLACK_TYPES", cfg.SlackTypes, tt.slack},
				{"SINK_SOURCES", cfg.Sources, tt.sources},
				{"WEBHOOK_2_TYPES", cfg.WebhookOverrides[2].Types, tt.webhook2},
			} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}
}

// filters is the filter subjects of a sink's consumer.
func filters(t *testing.T, js jetstream.JetStream, sink string) []string {
	t.Helper()
	c, err := js.Consumer(context.Background(), bus.EventsStream, sink)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return cfg.FilterSubjects
}

// runUntil runs the notifier with env until done reports true (checked
// every 20ms) or 10s pass, and returns its logs.
func runUntil(t *testing.T, env map[string]string, done func(logs string) bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncbuf.Buffer{}
	errc := make(chan error, 1)
	go func() { errc <- notifierapp.Run(ctx, envconfig.MapLookuper(env), &syncbuf.Buffer{}, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for !done(logs.String()) {
		select {
		case err := <-errc:
			t.Fatalf("notifier stopped: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting; logs:\n%s", logs)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("notifier: %v\n%s", err, logs)
	}
	return logs.String()
}

// A start refused for a bad filter leaves every existing consumer as it
// was; a good start (the control) does bring the filters up to date, with
// the spaces after the commas dropped.
func TestBadFilterKeepsConsumer(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer hook.Close()
	good := map[string][]string{
		"webhook":   notifier.FilterSubjects([]string{events.TypeRetired}, []string{"vpp"}),
		"webhook-2": notifier.FilterSubjects([]string{events.TypeRegistered}, []string{"vpp"}),
		"slack":     notifier.FilterSubjects([]string{events.TypeRoleChanged}, []string{"vpp"}),
	}
	for sink, f := range good {
		if _, err := js.CreateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{
			Durable: sink, AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: f,
		}); err != nil {
			t.Fatal(err)
		}
	}
	base := map[string]string{
		"NATS_URL": srv.ClientURL(), "HTTP_ADDR": "127.0.0.1:0", "CONSOLE": "false",
		"WEBHOOK_URL": hook.URL + "/a," + hook.URL + "/b", "SLACK_WEBHOOK_URL": hook.URL + "/slack", "ALLOW_INSECURE_HTTP": "true",
		"WEBHOOK_TYPES": events.TypeRetired, "WEBHOOK_2_TYPES": events.TypeRegistered,
		"SLACK_TYPES": events.TypeRoleChanged, "SINK_SOURCES": "vpp",
	}
	for _, tt := range badFilters {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				if k != "WEBHOOK_URL" {
					env[k] = v
				}
			}
			runCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			err := notifierapp.Run(runCtx, envconfig.MapLookuper(env), &syncbuf.Buffer{}, &syncbuf.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want[0]) {
				t.Errorf("Run: %v, want an error naming %s", err, tt.want[0])
			}
			for sink, f := range good {
				if got := filters(t, js, sink); !slices.Equal(got, f) {
					t.Errorf("consumer %s: filters %q, want them unchanged: %q", sink, got, f)
				}
			}
		})
	}
	t.Run("control: a good start updates the filters", func(t *testing.T) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		env["WEBHOOK_TYPES"] = "user.registered, user.retired"
		want := notifier.FilterSubjects([]string{events.TypeRegistered, events.TypeRetired}, []string{"vpp"})
		runUntil(t, env, func(string) bool { return slices.Equal(filters(t, js, "webhook"), want) })
	})
}

// A SINK_SOURCES entry that is possible but has no events on the stream,
// while other sources do, is warned about at start, naming the sources
// that have events; when the notifier cannot tell, it says nothing.
func TestSinkSourcesWarning(t *testing.T) {
	const warning = "SINK_SOURCES names a source with no events on the stream: its events will be delivered only if a poller source has exactly that name"
	tests := []struct {
		name    string
		stream  bool     // create the event stream
		publish []string // sources with an event on it
		sources string   // SINK_SOURCES
		warned  []string // the sources warned about; nil = no warning
	}{
		{"source with events", true, []string{"vpp", "veeam"}, "vpp", nil},
		{"every source has events", true, []string{"vpp", "veeam"}, "veeam, vpp", nil},
		{"one source without events", true, []string{"vpp", "veeam"}, "vpp,vpp-eu", []string{"vpp-eu"}},
		{"empty stream", true, nil, "vpp-eu", nil},
		{"no stream yet", false, nil, "vpp-eu", nil},
		{"no SINK_SOURCES", true, []string{"vpp"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t)
			_, js := natstest.Connect(t, srv)
			ctx := context.Background()
			if tt.stream {
				if _, err := bus.Ensure(ctx, js, bus.Config{}); err != nil {
					t.Fatal(err)
				}
			}
			for _, src := range tt.publish {
				e, err := events.New(events.Spec{Type: events.TypeRegistered, Observed: time.Now(),
					User: events.User{Source: src, SourceKind: events.KindVPP, ID: "u1", Status: "active"}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bus.Publish(ctx, js, []events.Event{e}); err != nil {
					t.Fatal(err)
				}
			}
			logs := runUntil(t, map[string]string{
				"NATS_URL": srv.ClientURL(), "HTTP_ADDR": "127.0.0.1:0", "SINK_SOURCES": tt.sources, "LOG_FORMAT": "json",
			}, func(logs string) bool { return strings.Contains(logs, "notifier started") })
			var warned []string
			for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
				var rec struct {
					Level, Msg, Source string
					Seen               []string `json:"sources_with_events"`
				}
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				if rec.Level != "WARN" || !strings.HasPrefix(rec.Msg, "SINK_SOURCES") {
					continue
				}
				if rec.Msg != warning {
					t.Errorf("warning %q, want %q", rec.Msg, warning)
				}
				warned = append(warned, rec.Source)
				if want := sorted(tt.publish); !slices.Equal(rec.Seen, want) {
					t.Errorf("warning lists the sources %q, want %q", rec.Seen, want)
				}
			}
			if !slices.Equal(warned, tt.warned) {
				t.Fatalf("warned about %q, want %q; logs:\n%s", warned, tt.warned, logs)
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
