//go:build tools

// Temporary: pins the chosen dependencies while the packages that use them
// are being written.
package rollcall

import (
	_ "github.com/cloudevents/sdk-go/v2/protocol/http"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/sethvargo/go-envconfig"
)
