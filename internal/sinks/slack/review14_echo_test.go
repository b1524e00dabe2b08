package slack_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sinks/slack"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestReview14SlackTokenSegmentEchoed: the secret of a Slack incoming
// webhook URL (https://hooks.slack.com/services/T…/B…/<token>) is its last
// path segment. post.Endpoint redacts the whole URL and the whole path,
// but not that segment alone: a proxy or gateway answering
// "403 webhook token <token> revoked" puts the credential in the delivery
// error, which is logged, kept in the dead letter and shown by /readyz.
func TestReview14SlackTokenSegmentEchoed(t *testing.T) {
	const token = "Zq8ExampleSlackT0kenXyz42"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seg := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("webhook token " + seg + " revoked"))
	}))
	defer srv.Close()
	s, err := slack.New(slack.Config{WebhookURL: srv.URL + "/services/T0123ABCD/B0123ABCD/" + token, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.New(events.Spec{Type: events.TypeRetired, User: events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "1", Status: "retired"}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), e)
	if err == nil {
		t.Fatal("a 403 was a success")
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("the Slack webhook token is in the delivery error: %v", err)
	}
}
