package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

// review19: one message delivered by many lanes at once (SendBinary with
// the message's own header value slices shared by every request), signed,
// through Direct, while the message's headers are read as the dead-letter
// path reads them. Run with -race: no request may write into the message,
// and every request carries the message's values.
func TestReview19HoldsSendBinarySharedHeadersConcurrently(t *testing.T) {
	var mu sync.Mutex
	bad := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ce-Id") == "" || r.Header.Get("Webhook-Signature") == "" || r.Header.Get("User-Agent") != "rollcall-notifier" {
			mu.Lock()
			bad++
			mu.Unlock()
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	s, err := New(Config{Name: "w", URL: srv.URL + "/hook/T0KENsecretPART1234567", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	if err != nil {
		t.Fatal(err)
	}
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "u1", Status: "Registered"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := events.ToHeaders(e)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h { // room beside each value
		h[k] = append(make([]string, 0, 4), vs...)
	}
	b, ok := events.AsBinary(h, body)
	if !ok {
		t.Fatal("AsBinary refused the event")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := s.SendBinary(context.Background(), b); err != nil {
					t.Error(err)
					return
				}
				var sb strings.Builder
				for k, vs := range h {
					sb.WriteString(k + strings.Join(vs[:cap(vs)][:len(vs)], ","))
				}
			}
		}()
	}
	wg.Wait()
	if bad != 0 {
		t.Errorf("%d requests lacked the message's headers", bad)
	}
	for k, vs := range h {
		if len(vs) != 1 {
			t.Errorf("header %s of the message now %q", k, vs)
		}
	}
}
