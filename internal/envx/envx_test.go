package envx_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/envx"
)

type typed struct {
	Emit     bool            `env:"EMIT_INITIAL, default=false"`
	Attempts int             `env:"MAX_ATTEMPTS, default=0"`
	Small    int8            `env:"SMALL"`
	Page     uint            `env:"PAGE_SIZE, default=500"`
	Ratio    float64         `env:"MAX_REMOVAL_RATIO, default=0.2"`
	MaxAge   time.Duration   `env:"MAX_AGE"`
	Every    *time.Duration  `env:"EVERY"`
	Schedule []time.Duration `env:"RETRY_SCHEDULE, default=5s,5m"`
	Name     string          `env:"NAME"`
	VPP      inner           `env:", prefix=VPP_"`
}

// TestMessages: a value that is not what the variable wants is named with
// the variable and said in words, not with a Go parser's error.
func TestMessages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix string
		env    map[string]string
		want   string
	}{
		{name: "bool", env: map[string]string{"EMIT_INITIAL": "yes"}, want: `EMIT_INITIAL "yes": want true or false`},
		{name: "int", env: map[string]string{"MAX_ATTEMPTS": "three"}, want: `MAX_ATTEMPTS "three": want a whole number`},
		{name: "int out of range", env: map[string]string{"SMALL": "300"}, want: `SMALL "300": out of range: want a whole number from -128 to 127`},
		{name: "uint negative", env: map[string]string{"PAGE_SIZE": "-1"}, want: `PAGE_SIZE "-1": want a whole number, 0 or more`},
		{name: "float", env: map[string]string{"MAX_REMOVAL_RATIO": "20%"}, want: `MAX_REMOVAL_RATIO "20%": want a number such as 0.2`},
		{name: "duration", env: map[string]string{"MAX_AGE": "1 day"}, want: `MAX_AGE "1 day": want a duration such as 90s, 15m, 2h30m, 1d or 2w`},
		{name: "duration no unit", env: map[string]string{"MAX_AGE": "30"}, want: `MAX_AGE "30": want a duration such as 90s, 15m, 2h30m, 1d or 2w`},
		{name: "duration pointer", env: map[string]string{"EVERY": "soon"}, want: `EVERY "soon": want a duration such as 90s, 15m, 2h30m, 1d or 2w`},
		{name: "duration list", env: map[string]string{"RETRY_SCHEDULE": "5s, x,1d"}, want: `RETRY_SCHEDULE "5s, x,1d": "x" is not a duration: want durations separated by commas, such as 5s,5m,2h,1d`},
		{name: "nested duration", env: map[string]string{"VPP_INTERVAL": "fast"}, want: `VPP_INTERVAL "fast": want a duration such as 90s, 15m, 2h30m, 1d or 2w`},
		{name: "prefixed bool", prefix: "EU_", env: map[string]string{"EU_EMIT_INITIAL": "oui"}, want: `EU_EMIT_INITIAL "oui": want true or false`},
		{name: "prefixed nested duration", prefix: "EU_", env: map[string]string{"EU_VPP_INTERVAL": "2x"}, want: `EU_VPP_INTERVAL "2x": want a duration such as 90s, 15m, 2h30m, 1d or 2w`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c typed
			err := envx.ProcessPrefixed(context.Background(), &c, envconfig.MapLookuper(tc.env), tc.prefix)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v\nwant        %s", err, tc.want)
			}
			var ne *strconv.NumError
			if tc.name == "bool" && !errors.As(err, &ne) {
				t.Errorf("the parser's error is no longer wrapped: %#v", err)
			}
		})
	}
}

// TestDaysAndWeeks: every duration variable takes days and weeks, in a
// list too, and Go's own forms keep working.
func TestDaysAndWeeks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prefix   string
		env      map[string]string
		maxAge   time.Duration
		every    time.Duration
		schedule []time.Duration
		interval time.Duration
	}{
		{name: "defaults", env: map[string]string{}, schedule: []time.Duration{5 * time.Second, 5 * time.Minute}, interval: 5 * time.Minute},
		{name: "go forms", env: map[string]string{"MAX_AGE": "36h", "EVERY": "90s", "RETRY_SCHEDULE": "1s,2m", "VPP_INTERVAL": "1h30m"},
			maxAge: 36 * time.Hour, every: 90 * time.Second, schedule: []time.Duration{time.Second, 2 * time.Minute}, interval: 90 * time.Minute},
		{name: "days and weeks", env: map[string]string{"MAX_AGE": "1d", "EVERY": "2w", "RETRY_SCHEDULE": "5s, 1d12h ,1w", "VPP_INTERVAL": "1d"},
			maxAge: 24 * time.Hour, every: 14 * 24 * time.Hour, schedule: []time.Duration{5 * time.Second, 36 * time.Hour, 7 * 24 * time.Hour}, interval: 24 * time.Hour},
		{name: "prefixed", prefix: "EU_", env: map[string]string{"EU_MAX_AGE": "3d", "EU_VPP_INTERVAL": "1d1h", "MAX_AGE": "junk"},
			maxAge: 72 * time.Hour, schedule: []time.Duration{5 * time.Second, 5 * time.Minute}, interval: 25 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c typed
			if err := envx.ProcessPrefixed(context.Background(), &c, envconfig.MapLookuper(tc.env), tc.prefix); err != nil {
				t.Fatal(err)
			}
			every := time.Duration(0)
			if c.Every != nil {
				every = *c.Every
			}
			if c.MaxAge != tc.maxAge || every != tc.every || !slices.Equal(c.Schedule, tc.schedule) || c.VPP.Every != tc.interval {
				t.Errorf("MAX_AGE %v EVERY %v RETRY_SCHEDULE %v VPP_INTERVAL %v; want %v %v %v %v",
					c.MaxAge, every, c.Schedule, c.VPP.Every, tc.maxAge, tc.every, tc.schedule, tc.interval)
			}
		})
	}
}

// TestOnlyDurations: a string variable that looks like a duration is left
// as it was typed.
func TestOnlyDurations(t *testing.T) {
	var c typed
	if err := envx.Process(context.Background(), &c, envconfig.MapLookuper(map[string]string{"NAME": "1d", "VPP_TOKEN": "2w"})); err != nil {
		t.Fatal(err)
	}
	if c.Name != "1d" || c.VPP.Token != "2w" {
		t.Errorf("NAME %q VPP_TOKEN %q, want them untouched", c.Name, c.VPP.Token)
	}
}
