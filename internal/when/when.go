// Package when reads the times and durations a person types: Go's
// durations with days and weeks too (1d, 2w, 1d12h), and times as RFC 3339,
// a date (midnight UTC), "now", or a duration meaning that long ago.
package when

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day and Week are the lengths of the d and w units: 24 and 168 hours,
// whatever the calendar (no daylight saving time in a duration).
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// Forms describes the times Time accepts, for usage texts.
const Forms = `RFC 3339 (2026-12-04T10:15:03Z), a date (2026-12-04 = midnight UTC), "now", or a duration ago (90m, 1h, 1d, 2w, 1d12h)`

// DateLayout is the date form Time accepts.
const DateLayout = "2006-01-02"

// ParseDuration is time.ParseDuration with two more units: d (24h) and w
// (7d), in any combination with Go's (1d12h, 2w3d, 1.5d). Go's own forms
// keep their meaning.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	bad := fmt.Errorf("duration %q: want a number and a unit, such as 90s, 15m, 2h30m, 1d or 2w", s)
	rest, neg := s, false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg, rest = rest[0] == '-', rest[1:]
	}
	if rest == "" {
		return 0, bad
	}
	var total float64 // nanoseconds
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, bad
		}
		num, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, bad
		}
		rest = rest[i:]
		j := 0
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]
		var size time.Duration
		switch unit {
		case "w":
			size = Week
		case "d":
			size = Day
		default:
			u, err := time.ParseDuration("1" + unit)
			if err != nil || unit == "" {
				return 0, bad
			}
			size = u
		}
		total += num * float64(size)
	}
	if total >= math.MaxInt64 { // float64(MaxInt64) is 2^63, itself too large
		return 0, fmt.Errorf("duration %q is too long (at most about 292 years)", s)
	}
	d := time.Duration(total)
	if neg {
		d = -d
	}
	return d, nil
}

// ErrFuture is wrapped by NotFuture's error.
var ErrFuture = errors.New("time is in the future")

// Time reads a time a person types, relative to now:
//   - "now";
//   - RFC 3339, with or without fractional seconds (2026-12-04T10:15:03Z);
//   - a date, 2026-12-04, meaning midnight UTC at its start;
//   - a duration (as ParseDuration reads it), meaning that long before now.
func Time(s string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(s)
	switch {
	case v == "":
		return time.Time{}, fmt.Errorf("empty time: want %s", Forms)
	case strings.EqualFold(v, "now"):
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(DateLayout, v); err == nil {
		return t, nil // time.Parse gives UTC for a layout without a zone
	}
	if d, err := ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration means that long ago, and cannot be negative", s)
		}
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want %s", s, Forms)
}

// NotFuture returns an error wrapping ErrFuture when t is after now.
func NotFuture(t, now time.Time) error {
	if t.After(now) {
		return fmt.Errorf("%s: %w (now is %s)", t.UTC().Format(time.RFC3339), ErrFuture, now.UTC().Format(time.RFC3339))
	}
	return nil
}
