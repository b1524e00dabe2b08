package vpp2_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/pkg/events"
)

// review17: raw never carries an invite code or invite URL, whatever the
// spelling Apple's record uses.
func TestReview17RawWithoutInviteSecrets(t *testing.T) {
	s, r := newScriptRig(t, 0)
	s.set(func(q url.Values) (int, string) { return 200, onePage("v1", bobActive) })
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	s.set(func(q url.Values) (int, string) {
		return 200, onePage("v2", bobActive,
			`{"clientUserId":"carol","email":"carol@x","status":"Registered","inviteCode":"SECRETA1","inviteUrl":"https://x/SECRETB2","InviteCode":"SECRETC3","invitationUrl":"https://x/SECRETD4"}`)
	})
	if _, err := r.tryRun(); err != nil {
		t.Fatal(err)
	}
	evs := natstest.Events(t, r.js)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	d, err := events.DecodeData(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []string{"SECRETA1", "SECRETB2", "SECRETC3", "SECRETD4"} {
		if strings.Contains(string(d.User.Raw), sec) || strings.Contains(string(evs[0].Data()), sec) {
			t.Errorf("event carries %s: %s", sec, d.User.Raw)
		}
	}
}
