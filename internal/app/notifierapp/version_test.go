package notifierapp_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
	"github.com/rollcall/rollcall/internal/version"
)

// The notifier serves rollcall_build_info and names its build in its
// first log line.
func TestBuildInfo(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	if _, err := bus.Ensure(context.Background(), js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	httpAddr := testutil.FreeAddr(t)
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- notifierapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"NATS_URL": srv.ClientURL(), "HTTP_ADDR": httpAddr, "CONSOLE": "true", "LOG_FORMAT": "json",
		}), io.Discard, logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	b := version.Get()
	series := fmt.Sprintf(`rollcall_build_info{goversion=%q,revision=%q,version=%q}`, b.GoVersion, b.Revision, b.Version)
	testutil.MetricAtLeast(t, 20*time.Second, httpAddr, series, 1)
	if first, _, _ := strings.Cut(logs.String(), "\n"); !strings.Contains(first, `"version":"`+b.Version+`"`) {
		t.Errorf("first log line without the build: %s", first)
	}
}
