package ops_test

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rollcall/rollcall/internal/ops"
)

// Review 15c point 1: "another process listens there" is said of an
// address in use only; every other failed listen gets the system's
// meaning, as net.Listen returns it (an *net.OpError around the errno) or
// as the embedded NATS server reports it (text only).
func TestBindHintNamesTheCause(t *testing.T) {
	const inUse = "IN USE"
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"in use", opErr(syscall.EADDRINUSE), inUse},
		{"in use, NATS text", errors.New("Error listening on port: 127.0.0.1:4222, \"listen tcp 127.0.0.1:4222: bind: address already in use\""), inUse},
		{"not this machine's", opErr(syscall.EADDRNOTAVAIL), "not one of this machine's"},
		{"not this machine's, NATS text", errors.New("listen tcp 198.51.100.7:4222: bind: cannot assign requested address"), "not one of this machine's"},
		{"privileged port", opErr(syscall.EACCES), "below 1024"},
		{"unknown host", &net.OpError{Op: "listen", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nohost.invalid", IsNotFound: true}}, "does not resolve"},
		{"other", errors.New("something else"), "check the address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ops.BindHint(tt.err, inUse)
			if !strings.Contains(got, tt.want) {
				t.Errorf("BindHint(%v) = %q, want %q in it", tt.err, got, tt.want)
			}
			if tt.want != inUse && got == inUse {
				t.Errorf("BindHint(%v) blames another process", tt.err)
			}
		})
	}
}
