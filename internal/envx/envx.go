// Package envx loads configuration with go-envconfig and makes its errors
// name the environment variable an operator set, not the Go field, and say
// what the variable wants instead of quoting a Go parser ("EMIT_INITIAL
// \"yes\": want true or false"). Durations take days and weeks too (1d,
// 2w, 1d12h; internal/when), besides Go's own forms.
package envx

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/when"
)

// Process fills target (a pointer to a struct) from l.
func Process(ctx context.Context, target any, l envconfig.Lookuper) error {
	return ProcessPrefixed(ctx, target, l, "")
}

// ProcessPrefixed fills target from the variables that start with prefix
// (e.g. "EU_" for EU_VEEAM_BASE_URL); errors name the full variable.
func ProcessPrefixed(ctx context.Context, target any, l envconfig.Lookuper, prefix string) error {
	fs := walk(reflect.TypeOf(target).Elem(), "", prefix)
	base := l
	l = durations(l, fs)
	if prefix != "" {
		l = envconfig.PrefixLookuper(prefix, l)
	}
	err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: l})
	if err == nil {
		return nil
	}
	return &Error{msg: explain(err.Error(), fs, base), err: err}
}

// Error is a configuration error phrased in variable names.
type Error struct {
	msg string
	err error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.err }

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	durationsType = reflect.TypeOf([]time.Duration(nil))
)

// durationLookuper gives go-envconfig, for the variables of time.Duration
// and []time.Duration fields, a value Go's time.ParseDuration reads: 1d
// becomes 24h0m0s. A value neither reads is passed on as it is, for
// go-envconfig to refuse.
type durationLookuper struct {
	l     envconfig.Lookuper
	one   map[string]bool // time.Duration fields
	lists map[string]bool // []time.Duration fields
}

func durations(l envconfig.Lookuper, fs []field) envconfig.Lookuper {
	d := &durationLookuper{l: l, one: map[string]bool{}, lists: map[string]bool{}}
	for _, f := range fs {
		switch f.typ {
		case durationType:
			d.one[f.Name] = true
		case durationsType:
			d.lists[f.Name] = true
		}
	}
	if len(d.one)+len(d.lists) == 0 {
		return l
	}
	return d
}

func (d *durationLookuper) Lookup(key string) (string, bool) {
	v, ok := d.l.Lookup(key)
	if !ok {
		return v, ok
	}
	switch {
	case d.one[key]:
		return goDuration(v), true
	case d.lists[key]:
		parts := strings.Split(v, ",")
		for i, p := range parts {
			parts[i] = goDuration(strings.TrimSpace(p))
		}
		return strings.Join(parts, ","), true
	}
	return v, true
}

// goDuration writes v in a form time.ParseDuration reads, when only
// when.ParseDuration does (days, weeks).
func goDuration(v string) string {
	s := strings.TrimSpace(v)
	if _, err := time.ParseDuration(s); err == nil || s == "" {
		return v
	}
	if d, err := when.ParseDuration(s); err == nil {
		return d.String()
	}
	return v
}

// explain rewrites go-envconfig's error, which names the field's path
// ("VPP: Interval: time: invalid duration \"x\""), in the words of the
// variable: its name, its value and what it wants.
func explain(msg string, fs []field, l envconfig.Lookuper) string {
	sorted := make([]field, len(fs))
	copy(sorted, fs)
	// Longest first, so "VPP: Interval" wins over a top-level "Interval".
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].path) > len(sorted[j].path) })
	for _, f := range sorted {
		rest, ok := strings.CutPrefix(msg, f.path+": ")
		if !ok {
			continue
		}
		if v, found := l.Lookup(f.Name); found {
			if want := wanted(f.typ, v); want != "" {
				return fmt.Sprintf("%s %q: %s", f.Name, v, want)
			}
		}
		return fmt.Sprintf("%s: %s", f.Name, rest)
	}
	return msg
}

// wanted says what a variable of type t wants when v is not that; "" when
// v is fine as such (the error is about something else).
func wanted(t reflect.Type, v string) string {
	s := strings.TrimSpace(v)
	switch {
	case t == durationType:
		if _, err := when.ParseDuration(s); err != nil {
			return "want a duration such as 90s, 15m, 2h30m, 1d or 2w"
		}
		return ""
	case t == durationsType:
		for _, p := range strings.Split(v, ",") {
			if _, err := when.ParseDuration(strings.TrimSpace(p)); err != nil {
				return fmt.Sprintf("%q is not a duration: want durations separated by commas, such as 5s,5m,2h,1d", strings.TrimSpace(p))
			}
		}
		return ""
	}
	switch t.Kind() {
	case reflect.Bool:
		if _, err := strconv.ParseBool(s); err != nil {
			return "want true or false"
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(s, 0, t.Bits()); err != nil {
			return numberWant(err, "want a whole number", fmt.Sprintf("out of range: want a whole number from %d to %d", minInt(t.Bits()), maxInt(t.Bits())))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, err := strconv.ParseUint(s, 0, t.Bits()); err != nil {
			return numberWant(err, "want a whole number, 0 or more", fmt.Sprintf("out of range: want a whole number from 0 to %d", ^uint64(0)>>(64-t.Bits())))
		}
	case reflect.Float32, reflect.Float64:
		if _, err := strconv.ParseFloat(s, t.Bits()); err != nil {
			return numberWant(err, "want a number such as 0.2", "out of range")
		}
	}
	return ""
}

func numberWant(err error, syntax, rng string) string {
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return rng
	}
	return syntax
}

func maxInt(bits int) int64 { return int64(uint64(1)<<(bits-1) - 1) }
func minInt(bits int) int64 { return -maxInt(bits) - 1 }

// Names lists every variable target's type reads, prefixes applied, so that
// a test can check each is documented.
func Names(target any) []string {
	fs := walk(reflect.TypeOf(target).Elem(), "", "")
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Name)
	}
	sort.Strings(out)
	return out
}
