package envx_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/envx"
)

type inner struct {
	Token string        `env:"TOKEN"`
	Every time.Duration `env:"INTERVAL, default=5m"`
}

type cfg struct {
	URL      string          `env:"NATS_URL"`
	Schedule []time.Duration `env:"RETRY_SCHEDULE, default=5s,5m,30m"`
	Ratio    float64         `env:"MAX_RATIO, default=0.2"`
	VPP      inner           `env:", prefix=VPP_"`
	NoTag    string
}

func TestVars(t *testing.T) {
	got := envx.Vars(&cfg{})
	want := []envx.Var{{"NATS_URL", ""}, {"RETRY_SCHEDULE", "5s,5m,30m"}, {"MAX_RATIO", "0.2"}, {"VPP_TOKEN", ""}, {"VPP_INTERVAL", "5m"}}
	if len(got) != len(want) {
		t.Fatalf("Vars = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Vars[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	u := envx.Usage(cfg{})
	for _, line := range []string{"RETRY_SCHEDULE  5s,5m,30m", "VPP_INTERVAL    5m", "NATS_URL        (unset)"} {
		if !strings.Contains(u, line) {
			t.Errorf("Usage lacks %q:\n%s", line, u)
		}
	}
}
