package vpp2_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
)

// fakeEnv is a fake served over HTTP and a client for it.
type fakeEnv struct {
	fake *vpp2test.Server
	dir  *vpptest.Server
	srv  *httptest.Server
	c    *vpp2.Client
}

func newFakeEnv(t *testing.T, pageSize, users int, cfg vpp2.Config) *fakeEnv {
	t.Helper()
	fake := vpp2test.NewServer(testSToken, nil)
	fake.SetPageSize(pageSize)
	fake.SetMaxRequestPerSecond(1000)
	for i := range users {
		fake.Directory().Put(vu(int64(i+1), "key"+string(rune('a'+i%26))+strings.Repeat("x", i/26), vpptest.StatusAssociated))
	}
	e := &fakeEnv{fake: fake, dir: fake.Directory(), srv: httptest.NewServer(fake)}
	t.Cleanup(e.srv.Close)
	e.c = e.client(t, cfg)
	return e
}

func (e *fakeEnv) client(t *testing.T, cfg vpp2.Config) *vpp2.Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "school"
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = e.srv.URL + "/mdm/v2"
	}
	cfg.SToken = testSToken
	if cfg.Backoff.Base == 0 {
		cfg.Backoff = fast
	}
	if cfg.MaxRequestsPerSecond == 0 {
		cfg.MaxRequestsPerSecond = 1000
	}
	c, err := vpp2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func full(t *testing.T, c *vpp2.Client) (sources.Snapshot, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Snapshot(ctx, sources.Request{Full: true})
}

func stops(err error) bool {
	var st interface{ StopsSource() bool }
	return errors.As(err, &st) && st.StopsSource()
}

// A versionId that changes between pages restarts the walk: the listing
// is then one consistent listing, the cursor its page 0's versionId.
func TestVersionChangeRestartsWalk(t *testing.T) {
	e := newFakeEnv(t, 2, 6, vpp2.Config{})
	var once sync.Once
	e.fake.SetBeforePage(func(page int) {
		if page == 2 {
			once.Do(func() { e.dir.Put(vu(99, "late", vpptest.StatusRegistered)) })
		}
	})
	snap, err := full(t, e.c)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Users) != 7 || !snap.Complete {
		t.Errorf("%d users (complete %v), want all 7 of the changed directory", len(snap.Users), snap.Complete)
	}
	if snap.Cursor != e.fake.VersionID() {
		t.Errorf("cursor %q, want the directory's versionId %q", snap.Cursor, e.fake.VersionID())
	}
	// Page 1, page 2 (changed: restart), then four pages.
	if got := e.fake.Requests(); got != 6 {
		t.Errorf("%d requests, want 6 (2 before the restart, 4 after)", got)
	}
}

// A versionId that keeps changing fails the run after the bounded
// restarts, with nothing that looks like a snapshot.
func TestVersionKeepsChangingFails(t *testing.T) {
	e := newFakeEnv(t, 2, 6, vpp2.Config{MaxRestarts: 2})
	e.fake.InjectFault(vpp2test.Fault{Page: 2, ChangeVersion: true, Times: 100})
	snap, err := full(t, e.c)
	if err == nil || !errors.Is(err, vpp2.ErrPaging) {
		t.Fatalf("error %v, want one wrapping ErrPaging", err)
	}
	if snap.Complete || len(snap.Users) > 0 || snap.Cursor != "" {
		t.Errorf("failed run returned a snapshot %+v", snap)
	}
	if got := e.fake.Requests(); got != 6 {
		t.Errorf("%d requests, want 6 (3 walks of 2 pages)", got)
	}
}

// Apple's error table, including error bodies sent with HTTP 200.
func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  vpp2test.Fault
		stops  bool
		retry  bool // retried, then the listing succeeds
		status int
	}{
		{name: "9601", fault: vpp2test.Fault{ErrorNumber: 9601}, stops: true},
		{name: "9621", fault: vpp2test.Fault{ErrorNumber: 9621}, stops: true},
		{name: "9625", fault: vpp2test.Fault{ErrorNumber: 9625}, stops: true},
		{name: "9722", fault: vpp2test.Fault{ErrorNumber: 9722}, stops: true},
		{name: "9637", fault: vpp2test.Fault{ErrorNumber: 9637}, stops: true},
		{name: "9647", fault: vpp2test.Fault{ErrorNumber: 9647}, stops: true},
		{name: "9625With200", fault: vpp2test.Fault{ErrorNumber: 9625, OKStatus: true}, stops: true},
		{name: "9646", fault: vpp2test.Fault{ErrorNumber: 9646, Times: 2}, retry: true},
		{name: "9603", fault: vpp2test.Fault{ErrorNumber: 9603, Times: 2}, retry: true},
		{name: "9603With200", fault: vpp2test.Fault{ErrorNumber: 9603, OKStatus: true, Times: 2}, retry: true},
		{name: "503", fault: vpp2test.Fault{HTTPStatus: 503, Times: 2}, retry: true},
		{name: "401WithoutBody", fault: vpp2test.Fault{HTTPStatus: 401}, stops: true},
		{name: "403WithoutBody", fault: vpp2test.Fault{HTTPStatus: 403}, stops: true},
		{name: "404WithoutBody", fault: vpp2test.Fault{HTTPStatus: 404}},
		{name: "9602", fault: vpp2test.Fault{ErrorNumber: 9602}},
		{name: "9602With200", fault: vpp2test.Fault{ErrorNumber: 9602, OKStatus: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, 2, 5, vpp2.Config{})
			tc.fault.Page = 2
			e.fake.InjectFault(tc.fault)
			snap, err := full(t, e.c)
			if tc.retry {
				if err != nil || len(snap.Users) != 5 {
					t.Fatalf("err %v, %d users; want the listing after retries", err, len(snap.Users))
				}
				return
			}
			if err == nil {
				t.Fatalf("listing succeeded with %d users; an error body is never a page", len(snap.Users))
			}
			if stops(err) != tc.stops {
				t.Errorf("StopsSource = %v, want %v (%v)", stops(err), tc.stops, err)
			}
			if got := e.fake.Requests(); got != 2 {
				t.Errorf("%d requests, want 2: a permanent error is not retried", got)
			}
		})
	}
}

// An error body on the first page is never an empty directory.
func TestErrorBodyIsNeverEmptyDirectory(t *testing.T) {
	e := newFakeEnv(t, 2, 0, vpp2.Config{})
	e.fake.InjectFault(vpp2test.Fault{Page: 1, ErrorNumber: 9602, OKStatus: true})
	if snap, err := full(t, e.c); err == nil {
		t.Fatalf("an error body gave a snapshot of %d users (complete %v)", len(snap.Users), snap.Complete)
	}
}

// Retry-After in seconds is waited for, never less.
func TestRetryAfterHonoured(t *testing.T) {
	e := newFakeEnv(t, 2, 3, vpp2.Config{})
	e.fake.InjectFault(vpp2test.Fault{Page: 2, ErrorNumber: 9603, RetryAfter: "1"})
	start := time.Now()
	if _, err := full(t, e.c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 950*time.Millisecond {
		t.Errorf("listing took %v; Retry-After: 1 asked for a second", d)
	}
}

// 9721 (the version id is no longer valid) turns an incremental run into
// a full one.
func TestInvalidVersionIDRunsFullSync(t *testing.T) {
	e := newFakeEnv(t, 2, 3, vpp2.Config{})
	e.fake.InjectFault(vpp2test.Fault{Page: 1, ErrorNumber: 9721})
	snap, err := e.c.Snapshot(context.Background(), sources.Request{Cursor: "v2-0000000000000001-0"})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Complete || len(snap.Users) != 3 {
		t.Errorf("complete %v with %d users, want the full listing", snap.Complete, len(snap.Users))
	}
}

// 9650 (page index refused) restarts the walk.
func TestInvalidPageIndexRestartsWalk(t *testing.T) {
	e := newFakeEnv(t, 2, 5, vpp2.Config{})
	e.fake.InjectFault(vpp2test.Fault{Page: 3, ErrorNumber: 9650})
	snap, err := full(t, e.c)
	if err != nil || len(snap.Users) != 5 {
		t.Fatalf("err %v, %d users", err, len(snap.Users))
	}
	if got := e.fake.Requests(); got != 6 {
		t.Errorf("%d requests, want 6 (3, then 3 again)", got)
	}
}

// An incremental run is never complete, follows the pages and keeps the
// cursor when nothing changed.
func TestIncrementalPaged(t *testing.T) {
	e := newFakeEnv(t, 1, 4, vpp2.Config{})
	snap, err := full(t, e.c)
	if err != nil {
		t.Fatal(err)
	}
	cursor := snap.Cursor
	inc, err := e.c.Snapshot(context.Background(), sources.Request{Cursor: cursor})
	if err != nil || inc.Complete || len(inc.Users) != 0 {
		t.Fatalf("unchanged: err %v, complete %v, %d users", err, inc.Complete, len(inc.Users))
	}
	e.dir.Put(vu(1, "keya", vpptest.StatusRetired))
	e.dir.Put(vu(2, "keyb", vpptest.StatusRegistered))
	e.dir.Put(vu(3, "keyc", vpptest.StatusRegistered))
	inc, err = e.c.Snapshot(context.Background(), sources.Request{Cursor: cursor})
	if err != nil {
		t.Fatal(err)
	}
	if inc.Complete || len(inc.Users) != 3 || inc.Pages != 3 || inc.Cursor == cursor {
		t.Errorf("incremental: complete %v, %d users over %d pages, cursor moved %v; want 3 users over 3 pages, a new cursor",
			inc.Complete, len(inc.Users), inc.Pages, inc.Cursor != cursor)
	}
	if got := e.fake.LookupRequests(); got != 1 {
		t.Errorf("%d lookups, want 1 (keya, shown only retired)", got)
	}
}

// More keys shown only retired than MaxRetiredLookups: a full listing
// settles them instead of one lookup each.
func TestManyRetiredBecomeFullSync(t *testing.T) {
	e := newFakeEnv(t, 10, 8, vpp2.Config{MaxRetiredLookups: 2})
	snap, err := full(t, e.c)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range e.dir.Users() {
		u.Status = vpptest.StatusRetired
		e.dir.Put(u)
	}
	inc, err := e.c.Snapshot(context.Background(), sources.Request{Cursor: snap.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if !inc.Complete || len(inc.Users) != 8 || e.fake.LookupRequests() != 0 {
		t.Errorf("complete %v, %d users, %d lookups; want a full listing without lookups", inc.Complete, len(inc.Users), e.fake.LookupRequests())
	}
}

// LookupUser: present for a key with only retired entries, absent for a
// key with none, an error (never absent) for a refused token.
func TestLookupUser(t *testing.T) {
	e := newFakeEnv(t, 2, 2, vpp2.Config{})
	e.dir.Put(vu(50, "gone-but-retired", vpptest.StatusRetired))
	ctx := context.Background()
	if ok, err := e.c.LookupUser(ctx, "gone-but-retired"); err != nil || !ok {
		t.Errorf("retired key: present %v, err %v; want present", ok, err)
	}
	if ok, err := e.c.LookupUser(ctx, "nobody"); err != nil || ok {
		t.Errorf("unknown key: present %v, err %v; want absent", ok, err)
	}
	e.fake.InjectFault(vpp2test.Fault{Lookup: true, ErrorNumber: 9625, OKStatus: true})
	if ok, err := e.c.LookupUser(ctx, "nobody"); err == nil || ok || !stops(err) {
		t.Errorf("refused token: present %v, err %v; want an error that stops the source", ok, err)
	}
}

// The client keeps to the service configuration's maxRequestPerSecond and
// uses its users URL.
func TestServiceConfigRateAndURL(t *testing.T) {
	fake := vpp2test.NewServer(testSToken, nil)
	fake.SetPageSize(1)
	fake.SetMaxRequestPerSecond(10)
	for i := range 6 {
		fake.Directory().Put(vu(int64(i+1), "k"+string(rune('a'+i)), vpptest.StatusRegistered))
	}
	var wrongPath atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/mdm/v2/", fake)
	mux.HandleFunc("/wrong/", func(w http.ResponseWriter, r *http.Request) { wrongPath.Add(1); http.NotFound(w, r) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: srv.URL + "/wrong", ServiceConfigURL: srv.URL + "/mdm/v2/service/config",
		SToken: testSToken, Backoff: fast, MaxRequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	snap, err := full(t, c)
	if err != nil {
		t.Fatal(err)
	}
	// Six pages at ten a second: five gaps of 100ms at least.
	if d := time.Since(start); d < 480*time.Millisecond {
		t.Errorf("6 pages took %v; maxRequestPerSecond 10 allows no less than 500ms", d)
	}
	if len(snap.Users) != 6 || wrongPath.Load() != 0 || fake.ConfigRequests() != 1 {
		t.Errorf("%d users, %d requests to BaseURL, %d config reads; want 6, 0 and 1", len(snap.Users), wrongPath.Load(), fake.ConfigRequests())
	}
}

// At most five requests are in flight, however many callers.
func TestAtMostFiveInFlight(t *testing.T) {
	fake := vpp2test.NewServer(testSToken, nil)
	var now, most atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		fake.ServeHTTP(w, r)
		now.Add(-1)
	}))
	t.Cleanup(srv.Close)
	c, err := vpp2.New(vpp2.Config{Name: "school", BaseURL: srv.URL + "/mdm/v2", SToken: testSToken, Backoff: fast, MaxRequestsPerSecond: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	fake.SetMaxRequestPerSecond(1000000)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.LookupUser(context.Background(), "someone"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > vpp2.MaxInFlight || m < 2 {
		t.Errorf("at most %d requests in flight, want between 2 and %d", m, vpp2.MaxInFlight)
	}
}

// Two active entries for one key is bad input, named by source and page.
func TestTwoActiveEntriesIsDecodeError(t *testing.T) {
	e := newFakeEnv(t, 1, 0, vpp2.Config{})
	e.dir.Put(vu(1, "twin", vpptest.StatusAssociated))
	e.dir.Put(vu(2, "twin", vpptest.StatusRegistered))
	_, err := full(t, e.c)
	var de *sources.DecodeError
	if !errors.As(err, &de) || de.Page != 2 || de.Field != "users[0].clientUserId" {
		t.Fatalf("error %v, want a DecodeError for page 2, users[0].clientUserId", err)
	}
}

// The sToken's expiry is reported for the poller's metric and warning.
func TestTokenExpiry(t *testing.T) {
	e := newFakeEnv(t, 1, 0, vpp2.Config{})
	exp, ok := e.c.TokenExpiry()
	if !ok || exp.Year() != 2099 {
		t.Errorf("TokenExpiry = %v, %v; want 2099", exp, ok)
	}
}

// No log line or error carries the sToken or the token inside it, even
// when Apple's message echoes them.
func TestSecretsNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newFakeEnv(t, 1, 3, vpp2.Config{})
	c := e.client(t, vpp2.Config{Logger: log})
	inner := "test-inner-token-123"
	e.fake.InjectFault(vpp2test.Fault{Page: 2, ErrorNumber: 9603, ErrorMessage: "token " + testSToken + " / " + inner, Times: 2})
	e.fake.InjectFault(vpp2test.Fault{Lookup: true, ErrorNumber: 9625, ErrorMessage: "revoked: " + inner})
	if _, err := full(t, c); err != nil {
		t.Fatal(err)
	}
	_, err := c.LookupUser(context.Background(), "keya")
	if err == nil {
		t.Fatal("lookup with a revoked token succeeded")
	}
	for _, s := range []string{testSToken, inner} {
		if strings.Contains(buf.String(), s) || strings.Contains(err.Error(), s) {
			t.Errorf("a secret reached the log or an error:\n%s\n%v", buf.String(), err)
		}
	}
	if !strings.Contains(buf.String(), "[sToken]") {
		t.Errorf("the log does not show where the echoed token was cut out:\n%s", buf.String())
	}
}

// A later page without currentPageIndex, versionId or totalPages cannot be
// checked and passes; one that names another page index fails the run.
func TestLaterPageFields(t *testing.T) {
	strip := func(body []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Error(err)
			return body
		}
		delete(m, "currentPageIndex")
		delete(m, "versionId")
		delete(m, "totalPages")
		out, _ := json.Marshal(m)
		return out
	}
	e := newFakeEnv(t, 2, 5, vpp2.Config{})
	e.fake.InjectFault(vpp2test.Fault{Page: 2, Rewrite: strip})
	if snap, err := full(t, e.c); err != nil || len(snap.Users) != 5 {
		t.Fatalf("err %v, %d users; want the listing", err, len(snap.Users))
	}
	e.fake.InjectFault(vpp2test.Fault{Page: 2, Rewrite: func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"currentPageIndex":1`), []byte(`"currentPageIndex":0`), 1)
	}})
	_, err := full(t, e.c)
	var de *sources.DecodeError
	if !errors.As(err, &de) || de.Field != "currentPageIndex" || !errors.Is(err, vpp2.ErrPaging) {
		t.Fatalf("error %v, want a DecodeError for currentPageIndex wrapping ErrPaging", err)
	}
}

// The service configuration is read again once older than its TTL, and a
// new maxRequestPerSecond in it is kept to from then on.
func TestServiceConfigReread(t *testing.T) {
	e := newFakeEnv(t, 1, 4, vpp2.Config{})
	c := e.client(t, vpp2.Config{ServiceConfigTTL: 400 * time.Millisecond})
	if _, err := full(t, c); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.ConfigRequests(); n != 1 {
		t.Errorf("%d service configuration reads in the first run, want 1", n)
	}
	e.fake.SetMaxRequestPerSecond(10)
	time.Sleep(410 * time.Millisecond)
	start := time.Now()
	if _, err := full(t, c); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.ConfigRequests(); n < 2 {
		t.Errorf("%d service configuration reads, want it read again", n)
	}
	if d := time.Since(start); d < 280*time.Millisecond {
		t.Errorf("4 pages took %v after the limit fell to 10 a second; want at least 300ms", d)
	}
}
