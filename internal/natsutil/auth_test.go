package natsutil_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/syncbuf"
)

// startAuthServer runs a server whose only user is poller, allowed the
// JetStream API, to subscribe to its own inbox only and to answer on "echo".
func startAuthServer(t *testing.T, password string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{{Username: "poller", Password: password, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"echo", "$JS.API.>", "_INBOX.poller.>"}}, // the echo responder answers to inboxes
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.poller.>", "echo"}},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s
}

// A user and password get in, and replies come to the user's own inbox,
// which is all such a user may subscribe to.
func TestUserPassword(t *testing.T) {
	s := startAuthServer(t, "right-password")
	var logs syncbuf.Buffer
	nc, err := natsutil.Connect(natsutil.ClientConfig{URL: s.ClientURL(), Name: "auth-test", User: "poller", Password: "right-password"},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitFor(t, "connected", nc.IsConnected)
	sub, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m, err := nc.Request("echo", []byte("hi"), 5*time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("request through the user's inbox: %v %v", m, err)
	}
	if strings.Contains(logs.String(), "right-password") {
		t.Fatalf("password logged:\n%s", logs.String())
	}
}

func TestInboxPrefix(t *testing.T) {
	for user, want := range map[string]string{
		"":         "_INBOX",
		"poller":   "_INBOX.poller",
		"a.b":      "_INBOX", // would share a prefix with user "a"
		"x*":       "_INBOX",
		"svc user": "_INBOX",
	} {
		if got := (natsutil.ClientConfig{User: user}).InboxPrefix(); got != want {
			t.Errorf("user %q: inbox prefix %q, want %q", user, got, want)
		}
	}
}

func TestOptionsRefuseContradictions(t *testing.T) {
	for _, cfg := range []natsutil.ClientConfig{
		{Password: "p"},
		{User: "u", Password: "p", Creds: "/some/file.creds"},
	} {
		if _, err := cfg.Options(); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// No password, whether given as the password or in NATS_URL's userinfo,
// appears in a log line or an error: wrong passwords (logged while the
// service retries), a URL nats.go cannot parse (its error quotes the URL),
// and the one-shot connection of the commands.
func TestPasswordNeverLogged(t *testing.T) {
	s := startAuthServer(t, "right-password")
	_, port, err := net.SplitHostPort(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const (
		wrong    = "Wr0ng-Passw0rd-xyzzy"
		inURL    = "Url-S3cret-plugh"
		escaped  = "p%40ss%2Fword-quux" // "p@ss/word-quux", escaped in the URL
		token    = "T0ken-S3cret-fnord"
		unparsed = "Bad-Url-S3cret-frob"
	)
	secrets := []string{wrong, inURL, escaped, "p@ss/word-quux", token, unparsed}
	cases := map[string]natsutil.ClientConfig{
		"wrong password":            {URL: "nats://127.0.0.1:" + port, User: "poller", Password: wrong},
		"wrong password in the URL": {URL: "nats://poller:" + inURL + "@127.0.0.1:" + port},
		"escaped password in URL":   {URL: "nats://127.0.0.1:1,nats://poller:" + escaped + "@127.0.0.1:" + port},
		"token in the URL":          {URL: "nats://" + token + "@127.0.0.1:" + port},
		"URL that does not parse":   {URL: "nats://poller:" + unparsed + "@127.0.0.1:notaport"},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			var logs syncbuf.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var all []string
			nc, err := natsutil.Connect(cfg, log)
			if err != nil {
				all = append(all, err.Error(), fmt.Sprintf("%+v", err))
			} else {
				waitFor(t, "a log line about the failed connection", func() bool {
					return strings.Contains(logs.String(), "nats connect failed") || strings.Contains(logs.String(), "closed")
				})
				if nc.IsConnected() {
					t.Fatal("connected with a wrong password")
				}
				nc.Close()
			}
			if _, err := natsutil.ConnectOnce(cfg, 2*time.Second); err == nil {
				t.Fatal("one-shot connection with a wrong password")
			} else {
				all = append(all, err.Error())
				if name != "URL that does not parse" && !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrNoServers) {
					t.Errorf("one-shot error %q does not say the credentials were refused", err)
				}
			}
			all = append(all, logs.String())
			for _, text := range all {
				for _, sec := range secrets {
					if strings.Contains(text, sec) {
						t.Errorf("secret %q in %q", sec, text)
					}
				}
			}
			t.Logf("%s", strings.Join(all, "\n"))
		})
	}
}

// The notifier's commands read NATS_USER and NATS_PASSWORD_FILE, and a
// wrong password is refused without being shown.
func TestAppUserPasswordVariables(t *testing.T) {
	s := startAuthServer(t, "right-password")
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("right-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(env map[string]string) (string, error) {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := notifierapp.DeadLetter(ctx, []string{"list"}, envconfig.MapLookuper(env), &out, &errOut)
		if err != nil {
			errOut.WriteString(err.Error())
		}
		return out.String() + errOut.String(), err
	}
	out, err := run(map[string]string{"NATS_URL": s.ClientURL(), "NATS_USER": "poller", "NATS_PASSWORD_FILE": file})
	if err != nil {
		t.Fatalf("with NATS_USER and NATS_PASSWORD_FILE: %v\n%s", err, out)
	}
	out, err = run(map[string]string{"NATS_URL": s.ClientURL(), "NATS_USER": "poller", "NATS_PASSWORD": "Wr0ng-Passw0rd-xyzzy"})
	if err == nil || !strings.Contains(err.Error(), "connect to nats") || strings.Contains(out, "Wr0ng-Passw0rd-xyzzy") {
		t.Fatalf("with a wrong NATS_PASSWORD: %v\n%s", err, out)
	}
	if _, err := run(map[string]string{"NATS_URL": s.ClientURL(), "NATS_PASSWORD": "x"}); err == nil || !strings.Contains(err.Error(), "NATS_USER") {
		t.Fatalf("NATS_PASSWORD without NATS_USER: %v", err)
	}
	if _, err := run(map[string]string{"NATS_URL": s.ClientURL(), "NATS_USER": "poller", "NATS_PASSWORD": "x", "NATS_PASSWORD_FILE": file}); err == nil ||
		!strings.Contains(err.Error(), "NATS_PASSWORD_FILE") {
		t.Fatalf("both NATS_PASSWORD and NATS_PASSWORD_FILE: %v", err)
	}
}
