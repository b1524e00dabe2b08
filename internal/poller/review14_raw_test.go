package poller_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/natstest"
	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam"
)

// review14Secrets are secret-bearing members a directory record may carry,
// each under a name that is plainly a credential but that IsSecretMember
// does not recognise (plural forms, passcode, recovery codes, an invite
// link). Each value must appear nowhere rollcall stores or publishes.
var review14Secrets = []struct{ member, value string }{
	{`"accessTokens":["LEAK-ACCESSTOKENS-1"]`, "LEAK-ACCESSTOKENS-1"},
	{`"refreshTokens":["LEAK-REFRESHTOKENS-2"]`, "LEAK-REFRESHTOKENS-2"},
	{`"apiKeys":[{"id":"k1","key":"LEAK-APIKEYS-3"}]`, "LEAK-APIKEYS-3"},
	{`"passcode":"LEAK-PASSCODE-4"`, "LEAK-PASSCODE-4"},
	{`"recoveryCodes":["LEAK-RECOVERYCODES-5"]`, "LEAK-RECOVERYCODES-5"},
	{`"inviteLink":"https://portal.example.com/join/LEAK-INVITELINK-6"`, "LEAK-INVITELINK-6"},
	{`"inviteUrls":["https://portal.example.com/join/LEAK-INVITEURLS-7"]`, "LEAK-INVITEURLS-7"},
	// the control: the rule does catch the documented credentials object
	{`"credentials":{"userName":"u1","password":"LEAK-CONTROL-PASSWORD"}`, "LEAK-CONTROL-PASSWORD"},
}

// TestReview14SecretVariantsInRawReachEveryStore: a real Veeam client reads
// one user from an httptest server; the user's record carries the members
// above. After the seeding run (KV and baseline object) and a role change
// (an event on ROLLCALL_EVENTS, with data.user.raw and data.previous.raw),
// no secret value may be found in the stream, the users bucket or the
// baselines object store (SPEC §1.3: "raw carries the API's record minus
// secrets").
func TestReview14SecretVariantsInRawReachEveryStore(t *testing.T) {
	var role atomic.Value
	role.Store("companyOwner")
	extra := ""
	for _, s := range review14Secrets {
		extra += "," + s.member
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v3/users" {
			http.NotFound(w, r)
			return
		}
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		w.Header().Set("Content-Type", "application/json")
		if off > 0 {
			fmt.Fprint(w, `{"meta":{"pagingInfo":{"total":1,"count":0,"offset":`+strconv.Itoa(off)+`}},"data":[]}`)
			return
		}
		fmt.Fprintf(w, `{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[{"instanceUid":"u-1","organizationUid":"o-1","userName":"alice","status":"Enabled","role":%q,"profile":{"email":"alice@example.com"}%s}]}`, role.Load().(string), extra)
	}))
	defer srv.Close()

	ctx := context.Background()
	nc, js := natstest.Connect(t, natstest.Start(t))
	h, err := bus.Ensure(ctx, js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := veeam.New(veeam.Config{Name: "v", BaseURL: srv.URL, Token: "api-key", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	p := poller.New(js, h, poller.Config{MaxPayload: int(nc.MaxPayload())}, poller.SourceConfig{Source: src, Interval: time.Hour})
	if _, err := p.RunOnce(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	role.Store("companyAdministrator")
	if res, err := p.RunOnce(ctx, "v"); err != nil || res.Events != 1 {
		t.Fatalf("role change: %+v %v", res, err)
	}

	stores := map[string][]byte{}
	s, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		stores["stream "+bus.EventsStream] = append(stores["stream "+bus.EventsStream], m.Data...)
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
			stores["KV users"] = append(stores["KV users"], e.Value()...)
		}
	}
	obj, err := h.Baselines.Get(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	stores["baseline object"] = b
	if !bytes.Contains(stores["KV users"], []byte("alice@example.com")) {
		t.Fatalf("the KV does not hold the user at all: %s", stores["KV users"])
	}
	for _, sec := range review14Secrets {
		for where, data := range stores {
			if bytes.Contains(data, []byte(sec.value)) {
				t.Errorf("%s: %s reached the %s", sec.member, sec.value, where)
			}
		}
	}
}
