// Package slack is the sink that posts each event to a Slack incoming
// webhook as a message a person can read at a glance: who, what happened,
// which source, and when.
//
// Slack answers 200 "ok" on success, 429 with Retry-After when rate
// limited, and a short error code in a text body otherwise
// ("invalid_payload", "no_service", "channel_not_found"); each non-2xx
// becomes an *httpx.StatusError carrying that code, and httpx decides
// whether it is worth retrying.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rollcall/rollcall/internal/sinks/internal/post"
	"github.com/rollcall/rollcall/pkg/events"
)

// Sink posts events to one Slack incoming webhook. It is safe for
// concurrent use.
type Sink struct {
	name    string
	url     string
	client  *http.Client
	timeout time.Duration
	redact  []string
}

// Name is the sink name.
func (s *Sink) Name() string { return s.name }

// Send posts the rendered message for e once.
func (s *Sink) Send(ctx context.Context, e events.Event) error {
	m, err := Render(e)
	if err != nil {
		return fmt.Errorf("slack %s: %w", s.name, err)
	}
	return s.Post(ctx, m)
}

// Post sends an already rendered message, such as a digest from
// RenderDigest, with the same error contract as Send.
func (s *Sink) Post(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("slack %s: encode message: %w", s.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := post.NewRequest(ctx, "slack "+s.name, s.url)
	if err != nil {
		return err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "rollcall-notifier")
	return post.Do(s.client, req, "slack "+s.name+": post", time.Now, s.redact...)
}
