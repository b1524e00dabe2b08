package post

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/httpx"
)

// A sink given no client sends with Direct, NewClient's transport without
// http.Client. Every outcome Do gives must be the one NewClient's client
// gives: status, retry or not, Retry-After, what the server saw, and an
// error that never quotes the URL.
func TestDirectIsNewClient(t *testing.T) {
	const token = "T0KENsecretPART1234567"
	var seen lockedLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		seen.printf("%s %s auth=%v:%s:%s ua=%s|", r.Method, r.URL.Path, ok, user, pw, r.Header.Get("User-Agent"))
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(204)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		case "/badlocation":
			w.Header().Set("Location", "http://[::1")
			w.WriteHeader(http.StatusFound)
		case "/busy":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/gone":
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, "no such hook "+token)
		case "/slow":
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/" + token
	_ = ln.Close()
	withUser := strings.Replace(srv.URL, "http://", "http://alice:"+token+"@", 1)

	type outcome struct{ err, seen string }
	run := func(d Doer, raw string, timeout time.Duration) outcome {
		seen.Reset()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		target, err := ParseTarget("test", raw)
		if err != nil {
			t.Fatal(err)
		}
		req := target.NewRequest(ctx, 2)
		req.Header.Set("User-Agent", "rollcall-test")
		err = Do(d, req, "test: post", time.Now, token)
		o := outcome{err: "<nil>", seen: seen.String()}
		if err != nil {
			retry, after := httpx.Retryable(err)
			var te *httpx.TransportError
			o.err = fmt.Sprintf("%T retry=%v after=%v transport=%v %v", err, retry, after, errors.As(err, &te), err)
		}
		if strings.Contains(o.err, token) || strings.Contains(o.err, ln.Addr().String()+"/") {
			t.Errorf("%s: the error quotes the URL: %s", raw, o.err)
		}
		return o
	}
	for _, c := range []struct {
		name, url string
		timeout   time.Duration
	}{
		{"2xx", srv.URL + "/ok", 5 * time.Second},
		{"redirect not followed", srv.URL + "/moved", 5 * time.Second},
		{"redirect to a bad location", srv.URL + "/badlocation", 5 * time.Second},
		{"429 with Retry-After", srv.URL + "/busy", 5 * time.Second},
		{"410 with the token echoed", srv.URL + "/gone", 5 * time.Second},
		{"credentials in the URL", withUser + "/ok", 5 * time.Second},
		{"connection refused", refused, 5 * time.Second},
		{"timeout", srv.URL + "/slow", 200 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			direct := run(NewDirect(), c.url, c.timeout)
			client := run(NewClient(), c.url, c.timeout)
			if c.name == "redirect to a bad location" {
				// http.Client fails on the Location it cannot parse, before
				// CheckRedirect would refuse to follow it: a transport error
				// retried for a day. Direct answers the 302 itself: permanent.
				if !strings.Contains(direct.err, "StatusError retry=false") {
					t.Errorf("direct: %+v", direct)
				}
				return
			}
			// The dial error names the address for both; the rest must match.
			if direct != client {
				t.Errorf("direct and http.Client differ:\n direct %+v\n client %+v", direct, client)
			}
		})
	}
}

// lockedLog is what the test server saw, written by its handlers.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format, a...)
}

func (l *lockedLog) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
