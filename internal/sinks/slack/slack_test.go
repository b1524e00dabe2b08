package slack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
	"github.com/rollcall/rollcall/internal/sinks/sinktest"
	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/pkg/events"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// The notifier depends on every sink satisfying this interface.
var _ sinktest.Sink = (*slack.Sink)(nil)

func newSink(t *testing.T, url string) *slack.Sink {
	t.Helper()
	// The conformance suite sends up to 16 events at once and expects a
	// request each: a threshold above that keeps digests out of its way
	// while the sink still counts every event.
	s, err := slack.New(slack.Config{WebhookURL: url, Timeout: 5 * time.Second, DigestThreshold: 100})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	sinktest.RunConformance(t, sinktest.Harness{
		NewSink: func(t *testing.T, url string) sinktest.Sink { return newSink(t, url) },
		HTTP:    true,
		Timeout: 5 * time.Second,
		CheckRequest: func(t *testing.T, r *http.Request, body []byte, sent events.Event) {
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			var m slack.Message
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("body is not a Slack message: %v", err)
			}
			want, err := slack.Render(sent)
			if err != nil {
				t.Fatal(err)
			}
			if m.Text != want.Text || len(m.Blocks) != len(want.Blocks) {
				t.Errorf("posted %+v, want %+v", m, want)
			}
		},
	})
}

func TestGolden(t *testing.T) {
	for _, f := range sinktest.Fixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			m, err := slack.Render(f.Event)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", f.Name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (go test -update rewrites it):\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}

func TestRenderWords(t *testing.T) {
	want := map[string][]string{
		"registered":      {"*jane.appleseed@example.com* registered", "vpp (vpp)", "2026-03-14T09:26:53Z"},
		"associated":      {"*jane.appleseed@example.com* associated"},
		"retired-status":  {"*jane.appleseed@example.com* retired"},
		"retired-removed": {"*Alpha* retired (removed from directory)", "veeam (veeam)"},
		"role-changed":    {"*Alpha* role changed CompanyAdministrator → CompanyOwner"},
		"updated":         {"*b@x.example* updated: email a@x.example → b@x.example"},
	}
	for _, f := range sinktest.Fixtures(t) {
		m, err := slack.Render(f.Event)
		if err != nil {
			t.Fatal(err)
		}
		all := m.Text
		for _, bl := range m.Blocks {
			if bl.Text != nil {
				all += "\n" + bl.Text.Text
			}
			for _, x := range append(bl.Fields, bl.Elements...) {
				all += "\n" + x.Text
			}
		}
		for _, w := range want[f.Name] {
			if !strings.Contains(all, w) {
				t.Errorf("%s: message lacks %q:\n%s", f.Name, w, all)
			}
		}
		if !strings.Contains(m.Text, "2026-03-14T09:26:53Z") || m.Text == "" {
			t.Errorf("%s: fallback text %q lacks the time", f.Name, m.Text)
		}
	}
}

func TestRenderEscapes(t *testing.T) {
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "x1", UserName: "<!channel> & <https://evil.example|click>", Status: "enabled"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: sinktest.Observed})
	if err != nil {
		t.Fatal(err)
	}
	m, err := slack.Render(e)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	if bytes.Contains(b, []byte("<!channel>")) || bytes.Contains(b, []byte("<https://")) {
		t.Errorf("unescaped Slack control sequence in %s", b)
	}
	if !strings.Contains(m.Text, "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;") {
		t.Errorf("text %q", m.Text)
	}
}

func TestRenderClipsLongValues(t *testing.T) {
	u := events.User{Source: "veeam", SourceKind: events.KindVeeam, ID: "x1", UserName: strings.Repeat("é", 5000), Status: "enabled"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: sinktest.Observed})
	if err != nil {
		t.Fatal(err)
	}
	m, err := slack.Render(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, bl := range m.Blocks {
		if bl.Text != nil && len([]rune(bl.Text.Text)) > 3000 {
			t.Errorf("section text of %d characters exceeds Block Kit's 3000", len([]rune(bl.Text.Text)))
		}
	}
}

func TestRenderBadData(t *testing.T) {
	e := sinktest.NewEvent(t)
	if err := e.SetData("application/json", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := slack.Render(e); err == nil {
		t.Error("Render accepted undecodable data")
	}
}

// TestSlackAnswers replays the incoming-webhook answers Slack documents.
func TestSlackAnswers(t *testing.T) {
	cases := []struct {
		code  int
		body  string
		hdr   string
		retry bool
		after time.Duration
	}{
		{200, "ok", "", false, 0},
		{429, "rate_limited", "30", true, 30 * time.Second},
		{400, "invalid_payload", "", false, 0},
		{403, "action_prohibited", "", false, 0},
		{404, "channel_not_found", "", false, 0},
		{404, "no_service", "", false, 0},
		{410, "channel_is_archived", "", false, 0},
		{500, "rollup_error", "", true, 0},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.hdr != "" {
					w.Header().Set("Retry-After", c.hdr)
				}
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(c.code)
				io.WriteString(w, c.body)
			}))
			defer srv.Close()
			err := newSink(t, srv.URL+sinktest.SecretPath).Send(context.Background(), sinktest.NewEvent(t))
			if c.code == 200 {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			var se *httpx.StatusError
			if !errors.As(err, &se) || se.Code != c.code || se.Message != c.body || se.RetryAfter != c.after {
				t.Fatalf("Send: %#v, want StatusError{%d, %v, %q}", err, c.code, c.after, c.body)
			}
			if retry, after := httpx.Retryable(err); retry != c.retry || after != c.after {
				t.Errorf("Retryable = %v, %v; want %v, %v", retry, after, c.retry, c.after)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, u := range []string{"", "hooks.slack.com/services/T1/B1/SECRETabc", "ftp://hooks.slack.com/services/T1/B1/SECRETabc", "https://hooks.slack.com/services/T1/B1/SECRETabc\x00"} {
		_, err := slack.New(slack.Config{WebhookURL: u})
		if err == nil {
			t.Errorf("New(%q) accepted it", u)
			continue
		}
		if strings.Contains(err.Error(), "SECRETabc") {
			t.Errorf("error %q leaks the webhook URL", err)
		}
	}
	s, err := slack.New(slack.Config{WebhookURL: "https://hooks.slack.com/services/T1/B1/SECRETabc"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "slack" {
		t.Errorf("default name %q", s.Name())
	}
}

func TestDigest(t *testing.T) {
	var evs []events.Event
	for _, f := range sinktest.Fixtures(t) {
		evs = append(evs, f.Event)
	}
	m := slack.RenderDigest(evs, 2)
	if !strings.HasPrefix(m.Text, "6 directory changes: 1 registered, 1 associated, 2 retired, 1 role changed, 1 updated (veeam 3, vpp 3), at 2026-03-14T09:26:53Z") {
		t.Errorf("digest text %q", m.Text)
	}
	if len(m.Blocks) != 4 || !strings.Contains(m.Blocks[2].Text.Text, "…and 4 more") || strings.Count(m.Blocks[2].Text.Text, "•") != 2 {
		t.Fatalf("digest blocks %+v", m.Blocks)
	}
	if f := m.Blocks[1].Fields; len(f) != 2 || f[0].Text != "*By type*\n1 registered\n1 associated\n2 retired\n1 role changed\n1 updated" || f[1].Text != "*By source*\nveeam 3\nvpp 3" {
		t.Errorf("digest counts %+v", f)
	}
	if c := m.Blocks[3].Elements[0].Text; !strings.Contains(c, "notifier replay --since 2026-03-14T09:26:53Z --until 2026-03-14T09:26:53Z") {
		t.Errorf("digest context %q", c)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got slack.Message
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got.Text != m.Text {
			w.WriteHeader(400)
			io.WriteString(w, "invalid_payload")
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	if err := newSink(t, srv.URL).Post(context.Background(), m); err != nil {
		t.Errorf("Post: %v", err)
	}
}
