// Package envx loads configuration with go-envconfig and makes its errors
// name the environment variable an operator set, not the Go field.
package envx

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// Process fills target (a pointer to a struct) from l.
func Process(ctx context.Context, target any, l envconfig.Lookuper) error {
	return ProcessPrefixed(ctx, target, l, "")
}

// ProcessPrefixed fills target from the variables that start with prefix
// (e.g. "EU_" for EU_VEEAM_BASE_URL); errors name the full variable.
func ProcessPrefixed(ctx context.Context, target any, l envconfig.Lookuper, prefix string) error {
	if prefix != "" {
		l = envconfig.PrefixLookuper(prefix, l)
	}
	err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: l})
	if err == nil {
		return nil
	}
	return &Error{msg: rename(err.Error(), fields(reflect.TypeOf(target).Elem(), "", prefix)), err: err}
}

// Error is a configuration error phrased in variable names.
type Error struct {
	msg string
	err error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.err }

// fields maps go-envconfig's error path ("VPP: Interval") to the variable
// ("VPP_INTERVAL") for every field of t.
func fields(t reflect.Type, path, prefix string) map[string]string {
	out := map[string]string{}
	for _, f := range walk(t, path, prefix) {
		out[f.path] = f.Name
	}
	return out
}

func rename(msg string, m map[string]string) string {
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	// Longest first, so "VPP: Interval" wins over a top-level "Interval".
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(msg, p+": "); ok {
			return fmt.Sprintf("%s: %s", m[p], rest)
		}
	}
	return msg
}

// Names lists every variable target's type reads, prefixes applied, so that
// a test can check each is documented.
func Names(target any) []string {
	m := fields(reflect.TypeOf(target).Elem(), "", "")
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
