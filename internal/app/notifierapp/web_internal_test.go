package notifierapp

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestExpectedRefusalsAreQuiet: the KV refusals a read-only console
// expects are logged at debug level; any other NATS error stays a warning.
func TestExpectedRefusalsAreQuiet(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(expectedRefusals{slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Warn("nats error", "err", errors.New(`nats: permissions violation: Permissions Violation for Publish to "$JS.API.STREAM.INFO.KV_rollcall_users"`))
	log.With("conn", "x").Error("nats connection closed", "err", errors.New(`Permissions Violation for Publish to "$JS.API.DIRECT.GET.KV_rollcall_sources.vpp.state"`))
	if b.Len() != 0 {
		t.Errorf("expected refusals logged above debug: %s", b.String())
	}
	log.Warn("nats error", "err", errors.New(`Permissions Violation for Publish to "$JS.API.STREAM.MSG.DELETE.ROLLCALL_DEADLETTER"`))
	if !strings.Contains(b.String(), "ROLLCALL_DEADLETTER") {
		t.Errorf("another refusal was hidden: %q", b.String())
	}
}
