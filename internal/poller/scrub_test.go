package poller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// TestSecretsInRawRecordsAreNeverPublishedOrStored: a Veeam user's record
// carries credentials {userName, password} and a VPP user's an inviteCode;
// neither may reach an event or the users bucket (issue 14, SPEC §1.3),
// while the rest of the record is carried as it arrived. A record that is
// not JSON is dropped whole rather than carried unscrubbed.
func TestSecretsInRawRecordsAreNeverPublishedOrStored(t *testing.T) {
	ctx := context.Background()
	nc, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const pw, invite, broken = "Hunter2-pw-secret", "INVITE-CODE-77", "notjson-TOKEN-99"
	users := veeamUsers(1, 2, 3, 4, 5, 6)
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: users[3:]}
	p := poller.New(js, h, poller.Config{MaxPayload: int(nc.MaxPayload())}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil { // the baseline: no events
		t.Fatal(err)
	}
	users[0].Raw = json.RawMessage(`{"instanceUid":"1","credentials":{"userName":"u1","password":"` + pw + `"},"keep":"kept-value"}`)
	users[1].Raw = json.RawMessage(`{"userId":2,"inviteCode":"` + invite + `","email":"b@example.com"}`)
	users[2].Raw = json.RawMessage(`{"accessToken":"` + broken + `"`) // cut short: not JSON
	src.users = users
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 3 {
		t.Fatalf("want 3 registrations: %+v %v", info.State, err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m.Data)
	}
	keys, err := h.Users.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := h.Users.Get(ctx, k)
		if err != nil && err != jetstream.ErrKeyNotFound {
			t.Fatal(err)
		}
		if e != nil {
			all = append(all, e.Value())
		}
	}
	joined := bytes.Join(all, []byte("\n"))
	for _, secret := range []string{pw, invite, broken, `"password"`, `"inviteCode"`} {
		if bytes.Contains(joined, []byte(secret)) {
			t.Errorf("%s reached an event or the users bucket", secret)
		}
	}
	for _, kept := range []string{"kept-value", "b@example.com"} {
		if !bytes.Contains(joined, []byte(kept)) {
			t.Errorf("%s, not a secret, was not carried", kept)
		}
	}
}

// TestSecretsStoredByEarlierReleasesAreRemoved: a release before the
// scrubbing stored a Veeam user's password in raw, in the users bucket.
// Raw is not part of the fingerprint, so no change would ever rewrite that
// record: the upgraded poller's first load rewrites it scrubbed (the
// bucket keeps one revision), and the user's next change publishes no
// secret either. An event an earlier release published with it loses it
// when it is read (events.FromHeaders), so no sink or replay sends it on.
func TestSecretsStoredByEarlierReleasesAreRemoved(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(span(1, 9)...)}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	const pw = "0ld-release-pa55word"
	u := src.users[0]
	u.Raw = json.RawMessage(`{"instanceUid":"1","credentials":{"userName":"u","password":"` + pw + `"}}`)
	b, _ := json.Marshal(state.Record{User: u, Fingerprint: u.Digest().String()})
	key := events.StateKey("v", u.ID)
	if _, err := h.Users.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	// The earlier release's event for it, as it published it.
	e, err := events.New(events.Spec{Type: events.TypeUpdated, User: u, Reason: events.ReasonFields, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	hdr, body, err := events.ToHeaders(e)
	if err != nil || !bytes.Contains(body, []byte(pw)) {
		t.Fatalf("the old event does not hold the password: %v", err)
	}

	// The upgraded poller starts (a new process: its index is loaded).
	p = poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	got, err := h.Users.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got.Value(), []byte(pw)) || !bytes.Contains(got.Value(), []byte(`"instanceUid":"1"`)) {
		t.Fatalf("state after the upgrade: %s", got.Value())
	}
	// The index survived its own rewrite: a change is still one event.
	src.users[0].Role = "CompanyAdministrator"
	if res, err := p.RunOnce(ctx, "v"); err != nil || res.Events != 1 {
		t.Fatalf("the user's next change: %+v %v", res, err)
	}
	read, err := events.FromHeaders(hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(read.Data(), []byte(pw)) || !bytes.Contains(read.Data(), []byte(`"instanceUid":"1"`)) {
		t.Fatalf("the old event, read: %s", read.Data())
	}
}

// A baseline an earlier release stored with a password is stored again
// without it, keeping the time it was first stored (replay's --as-of
// depends on it), and marked, so that a later start does not read it
// again; a baseline this release stores is marked from the start.
func TestOldBaselineIsScrubbedKeepingItsTime(t *testing.T) {
	js, h := rawEnv(t)
	ctx := context.Background()
	src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(1, 2)}
	p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	info, err := h.Baselines.GetInfo(ctx, "v")
	if err != nil || info.Metadata[bus.BaselineScrubbed] == "" {
		t.Fatalf("a new baseline is not marked scrubbed: %v %v", info, err)
	}

	const pw = "earlier-release-pa55word"
	old := veeamUsers(1, 2)
	old[0].Raw = json.RawMessage(`{"instanceUid":"u1","credentials":{"userName":"a","password":"` + pw + `"}}`)
	b, _ := json.Marshal(old)
	if _, err := h.Baselines.PutBytes(ctx, "v", b); err != nil { // as an earlier release stored it
		t.Fatal(err)
	}
	before, err := h.Baselines.GetInfo(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the rewrite's own time differs

	p = poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	got, err := h.Baselines.GetBytes(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte(pw)) {
		t.Fatal("the baseline still holds the password")
	}
	var users []events.User
	if err := json.Unmarshal(got, &users); err != nil || len(users) != 2 || users[0].ID != old[0].ID {
		t.Fatalf("the scrubbed baseline lost users: %d, %v", len(users), err)
	}
	after, err := h.Baselines.GetInfo(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := time.Parse(time.RFC3339Nano, after.Metadata[bus.BaselineStored])
	if err != nil || !stored.Equal(before.ModTime) {
		t.Fatalf("stored time %q (%v), want the original %v", after.Metadata[bus.BaselineStored], err, before.ModTime)
	}
	if after.Metadata[bus.BaselineScrubbed] == "" {
		t.Fatal("the rewritten baseline is not marked")
	}

	// Marked: a third start neither reads nor rewrites it.
	p = poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	again, err := h.Baselines.GetInfo(ctx, "v")
	if err != nil || again.NUID != after.NUID || !again.ModTime.Equal(after.ModTime) {
		t.Fatalf("a marked baseline was stored again: %v → %v (%v)", after.ModTime, again.ModTime, err)
	}
}
