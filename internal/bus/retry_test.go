package bus

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A JetStream answer of 503 ("JetStream system temporarily unavailable",
// a cluster without quorum) is sent again like an unanswered request; any
// other API error is final at once.
func TestRetryTemporarilyUnavailable(t *testing.T) {
	unavailable := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	calls := 0
	v, err := Retry(context.Background(), "read", func(context.Context) (int, error) {
		calls++
		if calls < 3 {
			return 0, unavailable
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 3 {
		t.Fatalf("Retry = %d, %v after %d calls; want 7 after 3", v, err, calls)
	}
	calls = 0
	_, err = Retry(context.Background(), "read", func(context.Context) (int, error) {
		calls++
		return 0, jetstream.ErrStreamNotFound
	})
	if !errors.Is(err, jetstream.ErrStreamNotFound) || calls != 1 {
		t.Fatalf("a final error: %v after %d calls; want it at once", err, calls)
	}
}
