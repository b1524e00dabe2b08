package poller_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/state"
	"github.com/rollcall/rollcall/pkg/events"
)

// oldEncodeKey is events.EncodeKey as c0ba0c7 (the release before this
// change) wrote it: always the reversible encoding, whatever its length.
func oldEncodeKey(id string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&0xF])
	}
	return b.String()
}

// TestKeysWrittenBeforeHashingAreMoved (found by the review of issue 12; the comment says what broke before the fix): the previous release stored every
// user under its reversible key, however long (a 200-byte id of accented
// letters gives a 600-byte key and a ~640-byte subject, which NATS takes).
// After the upgrade EncodeKey hashes keys over 256 bytes, and:
//   - DecodeKey rejects the old key as "not canonical", so LoadIndex fails
//     and the whole source fails on every run: one record stops a source;
//   - a plain old key (300 ASCII letters) still loads, but Records and
//     Commit look the user up under the new hashed key: when the user
//     leaves the directory its retirement is never published.
//
// The README's upgrade notes say nothing about this.
func TestKeysWrittenBeforeHashingAreMoved(t *testing.T) {
	for _, tc := range []struct{ name, id string }{
		{"escaped id", strings.Repeat("é", 100)},
		{"plain id", strings.Repeat("a", 300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js, h := rawEnv(t)
			ctx := context.Background()
			src := &fakeSrc{name: "v", kind: events.KindVeeam, complete: true, users: veeamUsers(span(1, 9)...)}
			p := poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
			if _, err := p.RunOnce(ctx, "v"); err != nil {
				t.Fatal(err)
			}
			// What the previous release stored for a user with a long id.
			long := events.User{Source: "v", SourceKind: events.KindVeeam, ID: tc.id, UserName: "long", Status: "enabled"}
			b, _ := json.Marshal(state.Record{User: long, Fingerprint: long.Digest().String()})
			if _, err := h.Users.Create(ctx, "v."+oldEncodeKey(tc.id), b); err != nil {
				t.Fatal(err)
			}
			// The upgraded poller starts; the user is in the directory.
			src.users = append(src.users, long)
			p = poller.New(js, h, poller.Config{}, poller.SourceConfig{Source: src, Interval: time.Hour})
			if _, err := p.RunOnce(ctx, "v"); err != nil {
				t.Fatalf("first run after the upgrade: %v", err)
			}
			// The user leaves the directory.
			src.users = src.users[:9]
			for range 2 {
				if _, err := p.RunOnce(ctx, "v"); err != nil {
					t.Fatalf("run after the long-id user left: %v", err)
				}
			}
			if got := trail(t, js); !slices.Contains(got, "user.retired "+tc.id) {
				t.Fatalf("the long-id user left the directory and was never retired: stream %.200q", got)
			}
		})
	}
}
