package post

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
)

// review19: an https endpoint that answers plain HTTP (a webhook URL
// written https:// for a receiver without TLS). http.Client names the
// mistake (http.ErrSchemeMismatch, "server gave HTTP response to HTTPS
// client"); Direct, calling the transport itself, skips that check in
// http.Client.send and gives the bare tls.RecordHeaderError ("first record
// does not look like a TLS handshake"). Direct is documented and tested to
// give http.Client's outcomes; this one differs.
func TestReview19BreaksDirectSchemeMismatchNotNamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	raw := strings.Replace(srv.URL, "http://", "https://", 1) + "/hook"
	outcome := func(d Doer) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		target, err := ParseTarget("test", raw)
		if err != nil {
			t.Fatal(err)
		}
		err = Do(d, target.NewRequest(ctx, 1), "test: post", time.Now)
		retry, _ := httpx.Retryable(err)
		return fmt.Sprintf("retry=%v %v", retry, err)
	}
	direct, client := outcome(NewDirect()), outcome(NewClient())
	if direct != client {
		t.Errorf("direct and http.Client differ:\n direct %s\n client %s", direct, client)
	}
}

// review19: both NewClient's client and Direct send through the proxy the
// environment names (HTTP_PROXY; NewClient clones http.DefaultTransport,
// whose Proxy is ProxyFromEnvironment), and credentials in the webhook URL
// go as the endpoint's Authorization, never as Proxy-Authorization. The
// environment is read once per process, so the check runs in a child.
func TestReview19HoldsDirectUsesTheEnvironmentsProxy(t *testing.T) {
	if os.Getenv("REVIEW19_PROXY_CHILD") == "1" {
		proxyChild(t)
		return
	}
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, _ := r.BasicAuth()
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s auth=%s:%s proxyauth=%q", r.Method, r.RequestURI, user, pw, r.Header.Get("Proxy-Authorization")))
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer proxy.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReview19HoldsDirectUsesTheEnvironmentsProxy$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "REVIEW19_PROXY_CHILD=1", "HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "POST http://hook.invalid/path/T0KEN auth=alice:pw proxyauth=\"\""
	if len(seen) != 2 || seen[0] != want || seen[1] != want {
		t.Errorf("the proxy saw %q, want %q twice (client, then direct)\n%s", seen, want, out)
	}
}

func proxyChild(t *testing.T) {
	for _, d := range []Doer{NewClient(), NewDirect()} {
		target, err := ParseTarget("test", "http://alice:pw@hook.invalid/path/T0KEN")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = Do(d, target.NewRequest(ctx, 1), "test: post", time.Now)
		cancel()
		if err != nil {
			t.Errorf("%T: %v", d, err)
		}
	}
}
