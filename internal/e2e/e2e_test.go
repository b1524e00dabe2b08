// Package e2e runs the whole pipeline as a user would: simulator APIs over
// HTTP → poller (real clients, embedded NATS) → notifier → a webhook
// receiver, and checks what arrives against what is on the stream.
package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/testutil"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/pkg/events"
)

const whKey = "rollcall-e2e-signing-key-32bytes"

var whSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte(whKey))

// received is one webhook request as the receiver saw it.
type received struct {
	event     events.Event
	webhookID string
	sigOK     bool
}

type receiver struct {
	mu   sync.Mutex
	got  []received
	errs []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	// Verify the Standard Webhooks signature independently of rollcall's
	// own code: HMAC-SHA256 over "id.timestamp.body" with the decoded key.
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, []byte(whKey))
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	sigOK := false
	for _, s := range strings.Fields(r.Header.Get("webhook-signature")) {
		if hmac.Equal([]byte(s), []byte(want)) {
			sigOK = true
		}
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		sigOK = false
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.errs = append(rc.errs, "decode: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := e.Validate(); err != nil {
		rc.errs = append(rc.errs, "invalid cloudevent: "+err.Error())
	}
	rc.got = append(rc.got, received{event: *e, webhookID: id, sigOK: sigOK})
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() ([]received, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...), append([]string(nil), rc.errs...)
}

func TestPipelineEndToEnd(t *testing.T) {
	sim := simulator.New(simulator.Config{Users: 0})
	api := httptest.NewServer(sim.Handler())
	defer api.Close()
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	natsAddr := testutil.FreeAddr(t)
	dataDir := t.TempDir()
	// The embedded server requires users (EMBEDDED_NATS_AUTH generate):
	// the notifier logs in with its own, as an operator would run it.
	if _, err := pollerapp.EnsureEmbeddedAuth(dataDir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	runErrs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		runErrs <- pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": "warn", "ALLOW_INSECURE_HTTP": "true",
			"VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": simulator.DefaultVPPToken,
			"VPP_INTERVAL": "100ms", "VPP_FULL_SYNC_INTERVAL": "1ms",
			"VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": simulator.DefaultVeeamToken, "VEEAM_INTERVAL": "100ms",
		}), io.Discard)
	}()
	go func() {
		defer wg.Done()
		runErrs <- notifierapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"NATS_URL": "nats://" + natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": "warn", "CONSOLE": "false",
			"WEBHOOK_URL": hook.URL, "WEBHOOK_SECRET": whSecret, "SINK_START": "all", "ALLOW_INSECURE_HTTP": "true",
			"NATS_USER": "notifier", "NATS_PASSWORD_FILE": filepath.Join(dataDir, pollerapp.AuthDir, "notifier.password"),
		}), io.Discard, io.Discard)
	}()

	// The test watches as the admin user.
	admin, err := os.ReadFile(filepath.Join(dataDir, pollerapp.AuthDir, "admin.password"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.UserInfo("admin", strings.TrimSpace(string(admin))), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Both sources seed silently first.
	testutil.CheckFor(t, 20*time.Second, "both sources seeded", func() error {
		kv, err := js.KeyValue(ctx, bus.SourcesBucket)
		if err != nil {
			return err
		}
		for _, s := range []string{"vpp", "veeam"} {
			if _, err := kv.Get(ctx, s+".state"); err != nil {
				return errors.New(s + ": " + err.Error())
			}
		}
		return nil
	})

	// One change of every kind.
	sim.VPP.Put(vpptest.User{UserID: 10, Email: "new@school.example", ClientUserIDStr: "c10", Status: vpptest.StatusRegistered}) // registered
	u3, _ := sim.VPP.Get(3)
	u3.Status, u3.ItsIDHash = vpptest.StatusAssociated, "h3=" // associated
	sim.VPP.Put(u3)
	u1, _ := sim.VPP.Get(1)
	u1.Status = vpptest.StatusRetired // retired by status
	sim.VPP.Put(u1)
	fx := veeamtest.FixtureUsers()
	sim.Veeam.Remove(fx[1].InstanceUID) // Beta: retired by removal
	alpha := fx[0]
	alpha.Role = "CompanyAdministrator" // roleChanged
	sim.Veeam.Put(alpha)
	delta := fx[2]
	email := "delta@msp.example"
	delta.Profile.Email = &email // updated
	delta.Status = "Enabled"     // only the case differs from "enabled": no change
	sim.Veeam.Put(delta)

	want := map[string]string{ // type/subject → reason
		events.TypeRegistered + "/10":                    events.ReasonNew,
		events.TypeAssociated + "/3":                     events.ReasonStatus,
		events.TypeRetired + "/1":                        events.ReasonStatus,
		events.TypeRetired + "/" + fx[1].InstanceUID:     events.ReasonRemoved,
		events.TypeRoleChanged + "/" + fx[0].InstanceUID: events.ReasonRole,
		events.TypeUpdated + "/" + fx[2].InstanceUID:     events.ReasonFields,
	}
	testutil.CheckFor(t, 30*time.Second, "every change delivered", func() error {
		got, errs := rc.snapshot()
		if len(errs) > 0 {
			t.Fatalf("receiver errors: %v", errs)
		}
		if len(got) < len(want) {
			return errors.New(strconv.Itoa(len(got)) + " delivered so far")
		}
		return nil
	})
	// Let both sources poll several more times: nothing may arrive twice.
	vppReq, veeamReq := sim.VPP.Requests(), sim.Veeam.Requests()
	testutil.CheckFor(t, 10*time.Second, "more polls", func() error {
		if sim.VPP.Requests() < vppReq+3 || sim.Veeam.Requests() < veeamReq+3 {
			return errors.New("waiting")
		}
		return nil
	})

	got, errs := rc.snapshot()
	if len(errs) > 0 {
		t.Fatalf("receiver errors: %v", errs)
	}
	seen := map[string]int{}
	for _, r := range got {
		e := r.event
		key := e.Type() + "/" + e.Subject()
		seen[key]++
		if !r.sigOK {
			t.Errorf("%s: webhook signature does not verify", key)
		}
		if r.webhookID != e.ID() {
			t.Errorf("%s: webhook-id %q, event id %q", key, r.webhookID, e.ID())
		}
		if err := events.Validate(e); err != nil {
			t.Errorf("%s: %v", key, err)
		}
		d, err := events.DecodeData(e)
		if err != nil {
			t.Fatal(err)
		}
		if reason, ok := want[key]; !ok {
			t.Errorf("unexpected event %s (%v)", key, d.Changes)
		} else if d.Reason != reason {
			t.Errorf("%s: reason %q, want %q", key, d.Reason, reason)
		}
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s delivered %d times, want exactly once", key, seen[key])
		}
	}

	// The stream holds exactly these events, each with Nats-Msg-Id = ce-id.
	stream, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var streamIDs, deliveredIDs []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("Nats-Msg-Id") != m.Header.Get("ce-id") {
			t.Errorf("message %d: Nats-Msg-Id %q != ce-id %q", seq, m.Header.Get("Nats-Msg-Id"), m.Header.Get("ce-id"))
		}
		streamIDs = append(streamIDs, m.Header.Get("Nats-Msg-Id"))
	}
	for _, r := range got {
		deliveredIDs = append(deliveredIDs, r.event.ID())
	}
	sort.Strings(streamIDs)
	sort.Strings(deliveredIDs)
	if strings.Join(streamIDs, ",") != strings.Join(deliveredIDs, ",") {
		t.Errorf("stream ids %v\ndelivered ids %v", streamIDs, deliveredIDs)
	}

	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("services did not stop within 10s")
	}
	close(runErrs)
	for err := range runErrs {
		if err != nil {
			t.Errorf("service returned %v", err)
		}
	}
}
