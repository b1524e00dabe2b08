package browsertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is a headless Chromium with one tab, collecting every console
// error, failed request and uncaught exception the pages cause.
type browser struct {
	ctx  context.Context
	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		cancelTab()
		cancelAlloc()
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	messages := chromedp.Console(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range messages { // ends when the tab's context ends
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errs = append(b.errs, fmt.Sprintf("%s %s:%d: %s", m.Type, m.URL, m.Line+1, m.Text))
				b.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { cancelTab(); cancelAlloc(); wg.Wait() })
	return b
}

// do runs actions with a time limit, failing the test on an error.
func (b *browser) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		t.Fatalf("browser at %s: %v", loc, err)
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, b *browser, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		t.Fatalf("browser at %s: %v", loc, err)
	}
	return v
}

// text reads an element's text. The overview replaces its content while
// it refreshes itself, so a node found may be gone when its text is read:
// then it is found again.
func (b *browser) text(t *testing.T, css string) string {
	t.Helper()
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
		cancel()
		if err == nil {
			return s
		}
		if try == 5 || !strings.Contains(err.Error(), "No node with given id") {
			t.Fatalf("read %s: %v", css, err)
		}
	}
}

// waitText reloads until the element's text holds want: the console's
// index catches up with the stream within moments of its start.
func (b *browser) waitText(t *testing.T, css, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := b.text(t, css)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q; it shows %q", css, want, got)
		}
		time.Sleep(300 * time.Millisecond)
		b.do(t, chromedp.Reload())
	}
}

// findRow checks that the paginated directory has a row for id holding
// want.
func (b *browser) findRow(t *testing.T, id, want string) {
	t.Helper()
	for range 20 {
		rows := get(t, b, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#directory tbody tr")).map(r => r.innerText)`))
		for _, r := range rows {
			if strings.Contains(r, id) {
				if !strings.Contains(r, want) {
					t.Errorf("directory row of %s: %q, want %q in it", id, r, want)
				}
				return
			}
		}
		if !get(t, b, chromedp.Evaluate[bool](`document.querySelector('a[rel="next"]') !== null`)) {
			break
		}
		b.do(t, chromedp.Click(chromedp.CSS(`a[rel="next"]`)), chromedp.WaitVisible(chromedp.CSS(`#directory`)))
	}
	t.Errorf("the directory has no row for %s", id)
}

// checkKeyboard checks that the first Tab reaches the skip link, and that
// every visible input has a label.
func (b *browser) checkKeyboard(t *testing.T) {
	t.Helper()
	b.do(t, chromedp.KeyEvent("\t"))
	if cls := get(t, b, chromedp.Evaluate[string](`document.activeElement.className`)); cls != "skip" {
		t.Errorf("the first Tab reaches %q, want the skip link", cls)
	}
	n := get(t, b, chromedp.Evaluate[int](`Array.from(document.querySelectorAll("input, select")).filter(i => i.type !== "hidden" && !(i.labels && i.labels.length)).length`))
	if n != 0 {
		t.Errorf("%d inputs without a label", n)
	}
}

// phone opens each page at a phone's width and checks that nothing is
// wider than the screen (a wide table scrolls inside its own box).
func (b *browser) phone(t *testing.T, urls ...string) {
	t.Helper()
	b.do(t, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, url := range urls {
		b.do(t, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`main`)))
		if w := get(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
			wide := get(t, b, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("body *")).filter(e => e.getBoundingClientRect().right > 391).slice(0, 8).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`))
			t.Errorf("at 390 px %s is %d px wide; too wide: %v", url, w, wide)
		}
	}
}

func (b *browser) screenshot(t *testing.T, path string) {
	t.Helper()
	buf := get(t, b, chromedp.FullScreenshot(100))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkErrors fails the test for every console error and exception.
func (b *browser) checkErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		t.Errorf("browser console: %s", e)
	}
}

// waitLive waits, without reloading, until the element's text is no
// longer was: the page's own refresh changed it.
func (b *browser) waitLive(t *testing.T, css, was string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for b.text(t, css) == was {
		if time.Now().After(deadline) {
			t.Fatalf("%s still shows %q: the page did not update itself", css, was)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
