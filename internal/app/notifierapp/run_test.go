package notifierapp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

func TestConfigErrors(t *testing.T) {
	const secretURL = "https://hooks.example/SECRET-PATH-xyz"
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		secrets []string // must not appear in the error
	}{
		{"bad webhook mode", map[string]string{"WEBHOOK_MODE": "loud"}, []string{"WEBHOOK_MODE"}, nil},
		{"bad sink start", map[string]string{"SINK_START": "yesterday"}, []string{"SINK_START"}, nil},
		{"bad max attempts", map[string]string{"MAX_ATTEMPTS": "-1"}, []string{"MAX_ATTEMPTS"}, nil},
		{"bad retry schedule", map[string]string{"RETRY_SCHEDULE": "5s,-1m"}, []string{"RETRY_SCHEDULE"}, nil},
		// Issue 14 point 7: each bad value named by its own variable.
		{"negative webhook timeout", map[string]string{"WEBHOOK_URL": secretURL, "WEBHOOK_TIMEOUT": "-1s"}, []string{"WEBHOOK_TIMEOUT"}, []string{"SECRET-PATH"}},
		{"bad shared secret", map[string]string{"WEBHOOK_URL": secretURL, "WEBHOOK_SECRET": "whsec_%%%"}, []string{"WEBHOOK_SECRET"}, []string{"%%%", "SECRET-PATH"}},
		{"override beyond the urls", map[string]string{"WEBHOOK_URL": secretURL, "WEBHOOK_3_SECRET": "whsec_MTIz"}, []string{"WEBHOOK_3_SECRET"}, []string{"whsec_MTIz", "SECRET-PATH"}},
		{"types override beyond the urls", map[string]string{"WEBHOOK_URL": secretURL, "WEBHOOK_2_TYPES": "user.retired"}, []string{"WEBHOOK_2_TYPES"}, nil},
		{"window below concurrency", map[string]string{"SINK_WINDOW": "4"}, []string{"SINK_WINDOW"}, nil},
		{"max attempts not a number", map[string]string{"MAX_ATTEMPTS": "ten"}, []string{"MAX_ATTEMPTS"}, nil},
		{"bad console", map[string]string{"CONSOLE": "maybe"}, []string{"CONSOLE"}, nil},
		{"no sink", map[string]string{"CONSOLE": "false"}, []string{"WEBHOOK_URL", "SLACK_WEBHOOK_URL", "CONSOLE"}, nil},
		{"secret not in whsec form", map[string]string{"WEBHOOK_URL": secretURL, "WEBHOOK_SECRET": "not-a-whsec-secret-value"},
			[]string{"WEBHOOK_SECRET"}, []string{"not-a-whsec-secret-value", "SECRET-PATH"}},
		{"webhook url not http", map[string]string{"WEBHOOK_URL": "ftp://user:SECRETPW@host/x"}, []string{"WEBHOOK_URL"}, []string{"SECRETPW"}},
		{"slack url and file", map[string]string{"SLACK_WEBHOOK_URL": secretURL, "SLACK_WEBHOOK_URL_FILE": "/nope"}, []string{"SLACK_WEBHOOK_URL"}, []string{"SECRET-PATH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			logs := &syncbuf.Buffer{}
			err := notifierapp.Run(ctx, envconfig.MapLookuper(tt.env), &syncbuf.Buffer{}, logs)
			if err == nil {
				t.Fatal("Run accepted a bad configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			for _, s := range tt.secrets {
				if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
					t.Errorf("secret %q leaked: %q", s, err)
				}
			}
		})
	}
}
