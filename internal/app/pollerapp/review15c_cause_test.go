package pollerapp_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// An address this machine does not have (a typo, an IP of another host, a
// container moved to another network) cannot be bound: "cannot assign
// requested address". The poller names that cause, then adds a guess that
// contradicts it: "another process listens there, perhaps a second poller".
// Nothing listens there; the operator hunts for a process that does not
// exist. The guess belongs to EADDRINUSE only (issue 15 point 5: errors
// name the cause).
func TestReview15cUnassignedAddressIsNotBlamedOnAnotherProcess(t *testing.T) {
	const foreign = "198.51.100.7" // TEST-NET-2: not an address of this machine
	if ln, err := net.Listen("tcp", foreign+":0"); err == nil {
		ln.Close()
		t.Skip(foreign + " is an address of this machine")
	}
	cert, key := selfSigned(t, t.TempDir())
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"HTTP_ADDR", map[string]string{"HTTP_ADDR": foreign + ":9090", "EMBEDDED_NATS_LISTEN": "127.0.0.1:0"}},
		{"EMBEDDED_NATS_LISTEN", map[string]string{"HTTP_ADDR": "", "EMBEDDED_NATS_LISTEN": foreign + ":4222",
			"EMBEDDED_NATS_TLS_CERT": cert, "EMBEDDED_NATS_TLS_KEY": key}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"DATA_DIR": t.TempDir(), "VEEAM_BASE_URL": "https://spc.example.com:1280", "VEEAM_TOKEN": "k"}
			for k, v := range tt.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := pollerapp.Run(ctx, envconfig.MapLookuper(env), &syncbuf.Buffer{})
			if err == nil {
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), "cannot assign requested address") {
				t.Fatalf("unexpected cause: %v", err)
			}
			if strings.Contains(err.Error(), "another process listens there") {
				t.Errorf("the error blames another process for an address this machine does not have:\n%v", err)
			}
		})
	}
}
