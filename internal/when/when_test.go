package when_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/when"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		err      string
	}{
		{name: "go seconds", in: "90s", want: 90 * time.Second},
		{name: "go compound", in: "2h30m", want: 150 * time.Minute},
		{name: "go zero", in: "0", want: 0},
		{name: "go negative", in: "-5m", want: -5 * time.Minute},
		{name: "day", in: "1d", want: 24 * time.Hour},
		{name: "week", in: "2w", want: 14 * 24 * time.Hour},
		{name: "day and hours", in: "1d12h", want: 36 * time.Hour},
		{name: "week day minute", in: "1w1d1m", want: 192*time.Hour + time.Minute},
		{name: "fraction of a day", in: "1.5d", want: 36 * time.Hour},
		{name: "negative day", in: "-1d", want: -24 * time.Hour},
		{name: "no unit", in: "5", err: `duration "5"`},
		{name: "unknown unit", in: "3y", err: `duration "3y"`},
		{name: "doubled unit", in: "1dd", err: `duration "1dd"`},
		{name: "empty", in: "", err: `duration ""`},
		{name: "sign only", in: "-", err: `duration "-"`},
		{name: "words", in: "yesterday", err: `duration "yesterday"`},
		{name: "too long", in: "20000w", err: "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := when.ParseDuration(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestTime(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 15, 3, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		want     time.Time
		err      string
	}{
		{name: "now", in: "now", want: now},
		{name: "NOW", in: "NOW", want: now},
		{name: "rfc3339", in: "2026-11-23T09:00:00Z", want: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)},
		{name: "rfc3339 offset", in: "2026-11-23T09:00:00+01:00", want: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)},
		{name: "rfc3339 fraction", in: "2026-11-23T09:00:00.5Z", want: time.Date(2026, 11, 23, 9, 0, 0, 5e8, time.UTC)},
		{name: "date is midnight UTC", in: "2026-12-04", want: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)},
		{name: "hour ago", in: "1h", want: now.Add(-time.Hour)},
		{name: "day ago", in: "1d", want: now.Add(-24 * time.Hour)},
		{name: "weeks ago", in: "2w", want: now.Add(-14 * 24 * time.Hour)},
		{name: "day and a half ago", in: "1d12h", want: now.Add(-36 * time.Hour)},
		{name: "negative duration", in: "-1h", err: "cannot be negative"},
		{name: "empty", in: "", err: "empty time"},
		{name: "garbage", in: "tomorrow", err: `"tomorrow" is not a time: want RFC 3339`},
		{name: "bad date", in: "2026-13-01", err: "is not a time"},
		{name: "date with slash", in: "2026/12/04", err: "is not a time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := when.Time(tc.in, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Time(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("Time(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestNotFuture(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	if err := when.NotFuture(now, now); err != nil {
		t.Errorf("now is not the future: %v", err)
	}
	err := when.NotFuture(now.Add(time.Second), now)
	if !errors.Is(err, when.ErrFuture) || !strings.Contains(err.Error(), "2026-12-04T10:00:01Z: time is in the future") {
		t.Errorf("a second later: %v", err)
	}
}
