package poller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestReview14OldBaselineKeepsPassword: a release before issue 14 seeded a
// Veeam source and stored its first snapshot, credentials.password
// included, in the baselines object store. The upgraded poller rewrites
// the users bucket scrubbed on its first load (scrub_test.go), but the
// baseline object keeps the password on disk for as long as the source
// exists (it is never replaced unless the source is seeded again), and any
// admin, backup or `nats object get` reads it. Issue 14 point 3 names "the
// baseline object" among the stores that must not hold the secret.
func TestReview14OldBaselineKeepsPassword(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2, 3)}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	// The baseline as the earlier release wrote it: raw unscrubbed.
	const pw = "0ld-release-baseline-pa55word"
	old := veeamUsers(1, 2, 3)
	old[0].Raw = json.RawMessage(`{"instanceUid":"u1","credentials":{"userName":"a","password":"` + pw + `"}}`)
	b, _ := json.Marshal(old)
	if _, err := h.Baselines.PutBytes(ctx, "v", b); err != nil {
		t.Fatal(err)
	}

	// The upgraded poller starts and runs (a change, so that it writes).
	p = poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	src.users[1].Role = "CompanyAdministrator"
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	got, err := h.Baselines.GetBytes(ctx, "v")
	if err != nil && err != jetstream.ErrObjectNotFound {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte(pw)) {
		t.Errorf("the baseline object still holds the password an earlier release stored after the upgraded poller ran")
	}
	// And the chunks of the stream behind it (a purge of old chunks would
	// not be enough if the object was merely re-put without purging).
	s, err := js.Stream(ctx, "OBJ_rollcall_baselines")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if bytes.Contains(m.Data, []byte(pw)) {
			t.Errorf("OBJ_rollcall_baselines message %d still holds the password", seq)
		}
	}
}
