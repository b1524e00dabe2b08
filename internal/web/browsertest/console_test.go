package browsertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/deadletter"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/pkg/events"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// hostileName is a user name a directory may legally hold: markup, a
// script and a right-to-left override. The console must show it as text.
const hostileName = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>\u202Eevil"

// hookToken is a secret in the webhook's URL: no page may show it.
const hookToken = "tok-5f1d0c2e9a"

// hook is a webhook receiver whose answer the test switches.
type hook struct {
	status atomic.Int32
	mu     sync.Mutex
	ids    []string // event ids it answered 2xx
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	st := int(h.status.Load())
	if st < 300 {
		h.mu.Lock()
		h.ids = append(h.ids, r.Header.Get("ce-id"))
		h.mu.Unlock()
	}
	w.WriteHeader(st)
}

func (h *hook) took(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.ids {
		if x == id {
			return true
		}
	}
	return false
}

// stack is the pipeline the console looks at.
type stack struct {
	sim     *simulator.Simulator
	hook    *hook
	js      jetstream.JetStream // admin, for the test's own checks
	console *notifierapp.Console
	// admin is a second console reading as the admin user, which may read
	// rollcall_sources: the sources' health the replay user cannot see.
	admin *notifierapp.Console
}

func TestConsoleInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("ROLLCALL_BROWSER_OPTIONAL") == "1" {
			t.Skipf("%s is absent and ROLLCALL_BROWSER_OPTIONAL=1: the console's browser test is skipped (apt-get install chromium to run it)", chromiumPath)
		}
		t.Fatalf("%s is absent: install Debian's chromium (.ci/run does), or set ROLLCALL_BROWSER_OPTIONAL=1 to skip this test", chromiumPath)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := startStack(ctx, t)

	// Three days with events on the chart: today's, and those of a
	// source whose changes were observed 3 and 10 days ago.
	now := time.Now().UTC()
	publishOld(ctx, t, st.js, now.AddDate(0, 0, -3), now.AddDate(0, 0, -10))

	// The role change, after a moment that the as-of page asks about.
	before := time.Now().UTC().Truncate(time.Second)
	time.Sleep(1500 * time.Millisecond)
	target := withEmail(t, st.sim.Veeam.Users())
	email := *target.Profile.Email
	oldRole := target.Role
	target.Role = "PortalOperator"
	if strings.EqualFold(oldRole, target.Role) {
		target.Role = "CompanyAdministrator"
	}
	st.sim.Veeam.Put(target)
	hostile := veeamtest.User{InstanceUID: "eeeeeeee-0000-4000-8000-00000000bad1", OrganizationUID: target.OrganizationUID,
		UserName: hostileName, Status: "Enabled", Role: "CompanyOwner"}
	st.sim.Veeam.Put(hostile)

	// The webhook answers 400: the role change is dead-lettered at once.
	roleEvent := waitDeadLetter(ctx, t, st.js, target.InstanceUID, events.TypeRoleChanged)
	st.hook.status.Store(http.StatusNoContent)

	b := newBrowser(t)
	art := artefactDir(t)
	shot := func(name string) {
		b.screenshot(t, filepath.Join(art, "console-"+name+".png"))
		if html := get(t, b, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); strings.Contains(html, hookToken) {
			t.Errorf("page %s shows the webhook URL's token", name)
		}
	}

	// Overview: sources, sinks, and one bar per day with events.
	b.do(t, chromedp.Navigate(st.console.URL), chromedp.WaitVisible(chromedp.CSS(`svg.chart`)))
	b.waitText(t, `#h-sources + div table`, "veeam")
	if b.text(t, `#event-count`) != "4 events" {
		time.Sleep(2 * time.Second) // the hostile user's run may come after the role change's
		for _, e := range natstest.Events(t, st.js) {
			t.Logf("on the stream: %s %s %s", e.Type(), e.Subject(), e.Time())
		}
	}
	b.waitText(t, `#event-count`, "4 events")
	bars := get(t, b, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart g.bar").length`))
	if bars != 3 {
		t.Errorf("chart: %d bars, want 3 (today, 3 and 10 days ago)", bars)
	}
	days := get(t, b, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("svg.chart g.bar")).map(g => g.dataset.day)`))
	for _, d := range []time.Time{now, now.AddDate(0, 0, -3), now.AddDate(0, 0, -10)} {
		if !contains(days, d.Format("2006-01-02")) {
			t.Errorf("chart: no bar for %s (bars: %v)", d.Format("2006-01-02"), days)
		}
	}
	shot("overview-replay")
	b.checkKeyboard(t)

	// The open overview updates itself: one more event, and its count
	// and chart change without a reload.
	count := b.text(t, `#event-count`)
	b.do(t, chromedp.Evaluate[chromedp.Void](`window.stayed = true`))
	publishOld(ctx, t, st.js, now.AddDate(0, 0, -3).Add(time.Minute))
	b.waitLive(t, `#event-count`, count)
	if !get(t, b, chromedp.Evaluate[bool](`window.stayed === true`)) {
		t.Error("the overview reloaded itself instead of updating in place")
	}

	// Search by e-mail, open the timeline, see the role change.
	b.do(t, chromedp.Navigate(st.console.URL+"search"), chromedp.WaitVisible(chromedp.CSS(`#q`)),
		chromedp.SendKeys(chromedp.CSS(`#q`), email), chromedp.Submit(chromedp.CSS(`#q`)), chromedp.WaitVisible(chromedp.CSS(`#results`)))
	shot("search")
	b.do(t, chromedp.Click(chromedp.CSS(`#results tbody a`)), chromedp.WaitVisible(chromedp.CSS(`#timeline`)))
	timeline := b.text(t, `#timeline`)
	for _, want := range []string{"role changed", "role: " + oldRole + " → " + target.Role, roleEvent} {
		if !strings.Contains(timeline, want) {
			t.Errorf("timeline lacks %q:\n%s", want, timeline)
		}
	}
	if !strings.Contains(timeline, "webhook: dead-lettered") {
		t.Errorf("timeline does not say the webhook dead-lettered the role change:\n%s", timeline)
	}
	shot("timeline")

	// The raw event, on demand.
	b.do(t, chromedp.Click(chromedp.CSS(`a.event-id[href="/event/`+roleEvent+`"]`)), chromedp.WaitVisible(chromedp.CSS(`pre.raw`)))
	raw := b.text(t, `pre.raw`)
	if !strings.Contains(raw, `"id": "`+roleEvent+`"`) || !strings.Contains(raw, email) {
		t.Errorf("raw event page lacks the event:\n%s", raw)
	}

	// The directory before the change holds the old role.
	asOf := st.console.URL + "asof?" + url.Values{"source": {"veeam"}, "at": {before.Format(time.RFC3339)}}.Encode()
	b.do(t, chromedp.Navigate(asOf), chromedp.WaitVisible(chromedp.CSS(`#directory`)))
	b.findRow(t, target.InstanceUID, oldRole)
	shot("asof")

	// Redrive the dead letter; the timeline then says delivered.
	b.do(t, chromedp.Navigate(st.console.URL+"deadletters"), chromedp.WaitVisible(chromedp.CSS(`table.dead`)))
	shot("deadletters")
	b.do(t, chromedp.Click(chromedp.CSS(`button.redrive-one[aria-label*="`+roleEvent+`"]`)), chromedp.WaitVisible(chromedp.CSS(`#redrive-result`)))
	result := b.text(t, `#redrive-result`)
	if !strings.Contains(result, "1 of 1 sent") {
		t.Errorf("redrive result: %q, want 1 of 1 sent", result)
	}
	shot("redrive")
	if !st.hook.took(roleEvent) {
		t.Errorf("the webhook never took event %s", roleEvent)
	}
	b.do(t, chromedp.Navigate(st.console.URL+"user?"+url.Values{"source": {"veeam"}, "id": {target.InstanceUID}}.Encode()), chromedp.WaitVisible(chromedp.CSS(`#timeline`)))
	result = b.text(t, `#timeline li.event[data-type="user.roleChanged"] .deliveries`)
	if !strings.Contains(result, "webhook: delivered") {
		t.Errorf("after the redrive the role change shows %q, want webhook: delivered", result)
	}

	// A hostile user name is text, never markup or script.
	b.do(t, chromedp.Navigate(st.console.URL+"search?q="+url.QueryEscape("evil")), chromedp.WaitVisible(chromedp.CSS(`#results`)))
	pwned := get(t, b, chromedp.Evaluate[bool](`window.pwned !== undefined || document.querySelector("#results img") !== null`))
	cell := b.text(t, `#results tbody td`)
	if pwned {
		t.Error("a user name's markup ran in the page")
	}
	if !strings.Contains(cell, "<script>") || !strings.Contains(cell, "‹U+202E›evil") {
		t.Errorf("hostile user name shown as %q, want its markup as text and the override visible", cell)
	}

	// Read as a user that may read rollcall_sources, the overview shows
	// each source's last complete run and health; a mass removal is held.
	b.do(t, chromedp.Navigate(st.admin.URL), chromedp.WaitVisible(chromedp.CSS(`svg.chart`)))
	b.waitText(t, `#h-sources + div table`, "healthy")
	if src := b.text(t, `#h-sources + div table`); !strings.Contains(src, " ago)") || !strings.Contains(src, "polled by") {
		t.Errorf("sources without their last complete run or poller:\n%s", src)
	}
	removeMany(st.sim, 10, target.InstanceUID, hostile.InstanceUID)
	b.waitText(t, `#h-sources + div table`, "10 removals held")
	shot("overview")

	// A phone-sized screen: nothing wider than the screen.
	b.phone(t, st.console.URL, st.console.URL+"search?q=operator", asOf, st.console.URL+"deadletters", st.console.URL+"event/"+roleEvent,
		st.console.URL+"user?"+url.Values{"source": {"veeam"}, "id": {target.InstanceUID}}.Encode())
	shot("phone")
	b.checkErrors(t)
	copyDocs(t, art)
}

// startStack runs the simulator, the poller (embedded NATS), the notifier
// with a webhook, and the console, as an operator would: the console reads
// as the replay user and redrives as the notifier.
func startStack(ctx context.Context, t *testing.T) *stack {
	sim := simulator.New(simulator.Config{Users: 20, Seed: 18})
	api := httptest.NewServer(sim.Handler())
	t.Cleanup(api.Close)
	h := &hook{}
	h.status.Store(http.StatusBadRequest)
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)

	natsAddr := testutil.FreeAddr(t)
	dataDir := t.TempDir()
	pw, err := pollerapp.EnsureEmbeddedAuth(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	run := func(name string, f func(context.Context) error) {
		rctx, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		wg.Go(func() {
			if err := f(rctx); err != nil && rctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	run("poller", func(ctx context.Context) error {
		return pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": "warn",
			"VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": simulator.DefaultVPPToken, "VPP_INTERVAL": "200ms", "VPP_FULL_SYNC_INTERVAL": "1ms",
			"VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": simulator.DefaultVeeamToken, "VEEAM_INTERVAL": "200ms", "ALLOW_INSECURE_HTTP": "true",
		}), io.Discard)
	})
	sinks := map[string]string{"NATS_URL": "nats://" + natsAddr, "CONSOLE": "false", "WEBHOOK_URL": hs.URL + "/hook?token=" + hookToken,
		"ALLOW_INSECURE_HTTP": "true", "SINK_START": "all", "LOG_LEVEL": "warn", "HTTP_ADDR": ""}
	notifierEnv := with(sinks, map[string]string{"NATS_USER": "notifier", "NATS_PASSWORD_FILE": filepath.Join(dataDir, pollerapp.AuthDir, "notifier.password")})
	run("notifier", func(ctx context.Context) error {
		return notifierapp.Run(ctx, envconfig.MapLookuper(notifierEnv), io.Discard, io.Discard)
	})

	nc, err := nats.Connect("nats://"+natsAddr, nats.UserInfo("admin", pw["admin"]), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitSeeded(ctx, t, js)

	auth := filepath.Join(dataDir, pollerapp.AuthDir)
	c := startConsole(ctx, t, with(sinks, map[string]string{"WEB_ADDR": "127.0.0.1:0", "WEB_REFRESH": "500ms",
		"NATS_USER": "replay", "NATS_PASSWORD_FILE": filepath.Join(auth, "replay.password"),
		"WEB_REDRIVE_NATS_USER": "notifier", "WEB_REDRIVE_NATS_PASSWORD_FILE": filepath.Join(auth, "notifier.password")}))
	admin := startConsole(ctx, t, with(sinks, map[string]string{"WEB_ADDR": "127.0.0.1:0",
		"NATS_USER": "admin", "NATS_PASSWORD_FILE": filepath.Join(auth, "admin.password")}))
	return &stack{sim: sim, hook: h, js: js, console: c, admin: admin}
}

// startConsole starts a console as the demo would, stopped when the test
// ends.
func startConsole(ctx context.Context, t *testing.T, env map[string]string) *notifierapp.Console {
	cctx, stop := context.WithCancel(ctx)
	logw := &testLog{t: t}
	t.Cleanup(logw.stop) // registered first, so it runs after the console's stop
	c, err := notifierapp.StartConsole(cctx, envconfig.MapLookuper(env), io.Discard, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		if err := c.Wait(); err != nil {
			t.Errorf("console: %v", err)
		}
	})
	return c
}

func with(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func waitSeeded(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	testutil.CheckFor(t, 30*time.Second, "both sources seeded", func() error {
		kv, err := js.KeyValue(ctx, bus.SourcesBucket)
		if err != nil {
			return err
		}
		for _, s := range []string{"vpp", "veeam"} {
			if _, err := kv.Get(ctx, s+".state"); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
}

// publishOld puts events observed on earlier days on the stream, of a
// source of their own so that the directories under test keep their users.
func publishOld(ctx context.Context, t *testing.T, js jetstream.JetStream, days ...time.Time) {
	for _, d := range days {
		i := d.Unix() % 1_000_000 // one user per moment: an event id of its own
		u := events.User{Source: "archive", SourceKind: events.KindVPP, ID: fmt.Sprint(9000 + i), Email: fmt.Sprintf("old%d@school.example", i), Status: events.StatusRegistered}
		e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Reason: events.ReasonNew, Observed: d})
		if err != nil {
			t.Fatal(err)
		}
		m, err := bus.Msg(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// waitDeadLetter waits for the dead letter of the user's event of type
// and returns the event's id.
func waitDeadLetter(ctx context.Context, t *testing.T, js jetstream.JetStream, userID, typ string) string {
	var id string
	testutil.CheckFor(t, 30*time.Second, typ+" of "+userID+" dead-lettered", func() error {
		entries, err := deadletter.List(ctx, js, "webhook")
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Undecodable && e.Event.Subject() == userID && e.Event.Type() == typ {
				id = e.Event.ID()
				return nil
			}
		}
		return errors.New("not yet")
	})
	return id
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// artefactDir is where screenshots go: ROLLCALL_CONSOLE_ARTEFACTS, or the
// test's temporary directory.
func artefactDir(t *testing.T) string {
	dir := os.Getenv("ROLLCALL_CONSOLE_ARTEFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// copyDocs copies two screenshots to docs/ when ROLLCALL_CONSOLE_DOCS=1:
// the overview as a console that may read rollcall_sources shows it, and
// the timeline.
func copyDocs(t *testing.T, art string) {
	if os.Getenv("ROLLCALL_CONSOLE_DOCS") != "1" || t.Failed() {
		return
	}
	for _, name := range []string{"overview", "timeline"} {
		b, err := os.ReadFile(filepath.Join(art, "console-"+name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "..", "docs", "console-"+name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// testLog writes log lines to the test's log until the test ends.
type testLog struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// withEmail picks a user that has an e-mail address to search by.
func withEmail(t *testing.T, users []veeamtest.User) veeamtest.User {
	for _, u := range users {
		if u.Profile.Email != nil && *u.Profile.Email != "" {
			return u
		}
	}
	t.Fatal("the simulator has no Veeam user with an e-mail address")
	return veeamtest.User{}
}

// removeMany removes n Veeam users, keeping those named: at least
// REMOVAL_GUARD_MIN (10) and over MAX_REMOVAL_RATIO of the directory, a
// removal the poller's guard holds.
func removeMany(sim *simulator.Simulator, n int, keep ...string) {
	for _, u := range sim.Veeam.Users() {
		if n == 0 {
			return
		}
		if !contains(keep, u.InstanceUID) {
			sim.Veeam.Remove(u.InstanceUID)
			n--
		}
	}
}
