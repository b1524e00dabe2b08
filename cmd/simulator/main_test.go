package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A malformed SIM_* variable stops the simulator with an error naming it,
// instead of quietly serving 0 users or never changing anything.
func TestBadEnvironmentNamed(t *testing.T) {
	tests := []struct{ name, key, value string }{
		{"users", "SIM_USERS", "4O"},
		{"negative users", "SIM_USERS", "-3"},
		{"churn", "SIM_CHURN", "3"},
		{"seed", "SIM_SEED", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.key, tt.value)
			err := run(context.Background(), []string{"serve", "-addr", "127.0.0.1:0"}, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.value) {
				t.Fatalf("%s=%s: %v", tt.key, tt.value, err)
			}
		})
	}
}

// Tokens the operator set are not echoed into the simulator's log; the
// built-in demo tokens are, to be copied.
func TestChosenTokensNotPrinted(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		shown bool
	}{
		{"demo tokens", nil, true},
		{"chosen tokens", []string{"-vpp-stoken", "c2VjcmV0LXN0b2tlbg==", "-veeam-token", "chosen-veeam-token"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			args := append([]string{"serve", "-addr", "127.0.0.1:0", "-churn", "0"}, tt.args...)
			if err := run(ctx, args, &bytes.Buffer{}, &stderr); err != nil {
				t.Fatal(err)
			}
			out := stderr.String()
			if !strings.Contains(out, "VPP_STOKEN=") {
				t.Fatalf("no connection hint printed:\n%s", out)
			}
			for _, secret := range []string{"c2VjcmV0LXN0b2tlbg==", "chosen-veeam-token"} {
				if strings.Contains(out, secret) {
					t.Errorf("chosen token %q printed:\n%s", secret, out)
				}
			}
			if tt.shown && strings.Contains(out, "<as set by") {
				t.Errorf("demo tokens hidden:\n%s", out)
			}
		})
	}
}

// version prints the build and starts nothing (it used to start a server
// on 8080).
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, []string{arg}, &out, &bytes.Buffer{})
		cancel()
		if err != nil || !strings.HasPrefix(out.String(), "simulator ") || !strings.Contains(out.String(), runtime.Version()) {
			t.Fatalf("%s: %v, %q", arg, err, out.String())
		}
	}
}
