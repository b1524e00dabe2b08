package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/syncbuf"
	"github.com/rollcall/rollcall/internal/testutil"
)

// bodies records every request body a webhook receives, answering status.
type bodies struct {
	status int
	mu     sync.Mutex
	got    [][]byte
}

func (b *bodies) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var hdr bytes.Buffer
	_ = r.Header.Write(&hdr)
	b.mu.Lock()
	b.got = append(b.got, append(hdr.Bytes(), body...))
	b.mu.Unlock()
	w.WriteHeader(b.status)
}

func (b *bodies) all() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.got...)
}

// TestNoSecretReachesAnyStoreOrDelivery is point 3 of issue 14: a Veeam
// user's credentials.password and a VPP user's inviteCode and inviteUrl
// reached the stream, the users bucket, the baseline object and every
// webhook, for a year. The whole pipeline runs (embedded NATS, poller,
// notifier with a webhook that takes events and one that refuses them into
// dead letters); then every store and every delivery is searched for each
// secret, and so are both services' debug logs.
func TestNoSecretReachesAnyStoreOrDelivery(t *testing.T) {
	const (
		veeamPW = "veeam-user-password-5ecret"
		invite  = "1nv1te0c0de0secret0beef0cafe0001"
		later   = "later-user-password-5ecret"
	)
	sim := simulator.New(simulator.Config{Users: 0})
	alpha := veeamtest.FixtureUsers()[0]
	alpha.Password = veeamPW
	sim.Veeam.Put(alpha)
	sim.VPP.Put(vpptest.User{UserID: 77, Email: "seventy-seven@school.example", ClientUserIDStr: "c77", Status: vpptest.StatusRegistered,
		InviteCode: invite, InviteURL: "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=" + invite + "&mt=8"})
	api := httptest.NewServer(sim.Handler())
	defer api.Close()
	ok, refusing := &bodies{status: http.StatusNoContent}, &bodies{status: http.StatusBadRequest}
	okSrv, refSrv := httptest.NewServer(ok), httptest.NewServer(refusing)
	defer okSrv.Close()
	defer refSrv.Close()

	dataDir, natsAddr := t.TempDir(), testutil.FreeAddr(t)
	if _, err := pollerapp.EnsureEmbeddedAuth(dataDir); err != nil {
		t.Fatal(err)
	}
	pollerLog, notifierLog := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = pollerapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"DATA_DIR": dataDir, "EMBEDDED_NATS_LISTEN": natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": "debug", "ALLOW_INSECURE_HTTP": "true",
			"EMIT_INITIAL": "true", "VPP_BASE_URL": api.URL + "/mdm", "VPP_STOKEN": simulator.DefaultVPPToken,
			"VPP_INTERVAL": "100ms", "VPP_FULL_SYNC_INTERVAL": "1ms",
			"VEEAM_BASE_URL": api.URL, "VEEAM_TOKEN": simulator.DefaultVeeamToken, "VEEAM_INTERVAL": "100ms",
		}), pollerLog)
	}()
	go func() {
		defer wg.Done()
		_ = notifierapp.Run(ctx, envconfig.MapLookuper(map[string]string{
			"NATS_URL": "nats://" + natsAddr, "HTTP_ADDR": "", "LOG_LEVEL": "debug", "CONSOLE": "false", "SINK_START": "all",
			"NATS_USER": "notifier", "NATS_PASSWORD_FILE": filepath.Join(dataDir, pollerapp.AuthDir, "notifier.password"),
			"WEBHOOK_URL": okSrv.URL + "," + refSrv.URL, "WEBHOOK_SECRET": whSecret, "ALLOW_INSECURE_HTTP": "true",
		}), io.Discard, notifierLog)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	// A user with a password appears after the seed, too.
	testutil.CheckFor(t, 30*time.Second, "the first users delivered", func() error {
		if len(ok.all()) < 2 {
			return errors.New("waiting")
		}
		return nil
	})
	beta := veeamtest.FixtureUsers()[1]
	beta.Password = later
	sim.Veeam.Put(beta)
	testutil.CheckFor(t, 30*time.Second, "every event delivered and dead-lettered", func() error {
		if len(ok.all()) < 3 || len(refusing.all()) < 3 {
			return errors.New("waiting")
		}
		return nil
	})

	// What NATS holds, read as admin.
	admin, err := os.ReadFile(filepath.Join(dataDir, pollerapp.AuthDir, "admin.password"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.UserInfo("admin", strings.TrimSpace(string(admin))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stores := map[string][][]byte{"webhook deliveries": ok.all(), "refused deliveries": refusing.all()}
	testutil.CheckFor(t, 30*time.Second, "dead letters stored", func() error {
		stores["dead letters"] = streamMessages(t, js, bus.DeadLetterStream)
		if len(stores["dead letters"]) < 3 {
			return errors.New("waiting")
		}
		return nil
	})
	stores["event stream"] = streamMessages(t, js, bus.EventsStream)
	for _, b := range []string{bus.UsersBucket, bus.SourcesBucket} {
		stores["bucket "+b] = bucketValues(t, js, b)
	}
	stores["baselines"] = objects(t, js, bus.BaselinesBucket)
	if len(stores["baselines"]) == 0 {
		t.Fatal("no baseline stored: the test would prove nothing about it")
	}
	// The stores hold the users at all: the search below looks at the
	// right bytes.
	if !bytes.Contains(bytes.Join(stores["event stream"], nil), []byte("seventy-seven@school.example")) {
		t.Fatal("the VPP user is not on the stream")
	}
	stores["poller log"] = [][]byte{[]byte(pollerLog.String())}
	stores["notifier log"] = [][]byte{[]byte(notifierLog.String())}
	for name, msgs := range stores {
		joined := bytes.Join(msgs, []byte("\n"))
		for _, secret := range []string{veeamPW, later, invite} {
			if bytes.Contains(joined, []byte(secret)) {
				t.Errorf("%s holds the secret %q", name, secret)
			}
		}
	}
}

func streamMessages(t *testing.T, js jetstream.JetStream, name string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var hdr bytes.Buffer
		_ = http.Header(m.Header).Write(&hdr)
		out = append(out, append(hdr.Bytes(), m.Data...))
	}
	return out
}

func bucketValues(t *testing.T, js jetstream.JetStream, bucket string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err == nil {
			out = append(out, e.Value())
		}
	}
	return out
}

func objects(t *testing.T, js jetstream.JetStream, bucket string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, i := range infos {
		b, err := store.GetBytes(ctx, i.Name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
