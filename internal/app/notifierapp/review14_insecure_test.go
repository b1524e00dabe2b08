package notifierapp

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// TestReview14SlackURLOverHTTP: the Slack webhook URL is itself the
// credential (anyone holding it can post to the channel; it has a _FILE
// variant for that reason). An http:// SLACK_WEBHOOK_URL sends it, path
// and all, in clear text on every delivery, and is accepted without a
// word, whereas issue 14 point 10 refuses http:// source URLs that carry a
// secret unless ALLOW_INSECURE_HTTP says so. The same applies to a
// webhook URL with a token in its path or query.
func TestReview14SlackURLOverHTTP(t *testing.T) {
	cfg, err := Load(context.Background(), envconfig.MapLookuper(map[string]string{
		"SLACK_WEBHOOK_URL": "http://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx",
		"CONSOLE":           "false",
	}))
	if err == nil {
		_, err = buildRoutes(cfg, io.Discard)
	}
	if err == nil {
		t.Fatal("an http:// SLACK_WEBHOOK_URL (the secret itself, in clear text) was accepted without ALLOW_INSECURE_HTTP")
	}
}

// An http:// webhook URL is refused the same way, naming the variable and
// never the URL; ALLOW_INSECURE_HTTP=true lets test receivers through.
func TestReview14WebhookURLOverHTTP(t *testing.T) {
	const url = "http://receiver.example/hooks/S3CRET-PATH-TOKEN"
	build := func(env map[string]string) error {
		cfg, err := Load(context.Background(), envconfig.MapLookuper(env))
		if err == nil {
			_, err = buildRoutes(cfg, io.Discard)
		}
		return err
	}
	err := build(map[string]string{"WEBHOOK_URL": url})
	if err == nil || !strings.Contains(err.Error(), "WEBHOOK_URL #1") || strings.Contains(err.Error(), "S3CRET") {
		t.Fatalf("http:// webhook: %v; want an error naming WEBHOOK_URL #1 and not quoting the URL", err)
	}
	if err := build(map[string]string{"WEBHOOK_URL": url, "ALLOW_INSECURE_HTTP": "true"}); err != nil {
		t.Fatalf("with ALLOW_INSECURE_HTTP=true: %v", err)
	}
}
