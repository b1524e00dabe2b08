package notifierapp

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/pkg/events"
)

// Each webhook URL can have its own secret and filter.
func TestWebhookOverrides(t *testing.T) {
	secretA := "whsec_" + base64.StdEncoding.EncodeToString([]byte("secret-a-0123456789"))
	secretB := "whsec_" + base64.StdEncoding.EncodeToString([]byte("secret-b-0123456789"))
	got := make(chan *http.Request, 2)
	bodies := make(chan []byte, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer srv.Close()
	cfg, err := Load(context.Background(), envconfig.MapLookuper(map[string]string{
		"WEBHOOK_URL": srv.URL + "/a," + srv.URL + "/b", "WEBHOOK_SECRET": secretA, "ALLOW_INSECURE_HTTP": "true",
		"WEBHOOK_2_SECRET": secretB, "WEBHOOK_2_TYPES": "user.retired", "CONSOLE": "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	routes, err := buildRoutes(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 2 || routes[0].Sink.Name() != "webhook" || routes[1].Sink.Name() != "webhook-2" {
		t.Fatalf("routes %v", routes)
	}
	if routes[0].Types != nil || !slices.Equal(routes[1].Types, []string{"user.retired"}) {
		t.Fatalf("types %v / %v", routes[0].Types, routes[1].Types)
	}
	e, err := events.New(events.Spec{Type: events.TypeRetired, User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "1", Status: "retired"}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{secretA, secretB} {
		if err := routes[i].Sink.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		r, body := <-got, <-bodies
		if err := webhook.Verify([]string{want}, r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook %d not signed with its own secret: %v", i+1, err)
		}
	}
}
