package deployments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
	"github.com/rollcall/rollcall/internal/testutil"
)

// TestKubernetesCluster deploys deployments/kubernetes onto a real
// Kubernetes cluster with `kubectl apply -k`, as README "Kubernetes" does,
// and checks that it runs: the namespace's restricted Pod Security
// Standard admits the pods, the kubelet's startup, liveness and readiness
// probes pass, the Secrets reach the services as files, one poller replica
// polls each source, a user added at the source arrives as a signed
// webhook, the PodDisruptionBudget counts both pollers, and when the
// polling pod is deleted the other replica takes over while the Deployment
// replaces the pod.
//
// It needs a throw-away cluster (it creates and deletes the namespace
// rollcall) whose pods can reach this machine: ROLLCALL_KUBECONFIG names
// its kubeconfig, ROLLCALL_KUBE_HOST_IP the address of this machine the
// pods reach, ROLLCALL_KUBE_CONTAINERD the containerd socket of its one
// node (the image is loaded there), and ROLLCALL_KUBECTL the kubectl to use.
// `bash .ci/kube` builds such a cluster from source and prints all four;
// .ci/run exports them. Without them the test skips, unless
// ROLLCALL_KUBE=require.
//
// What the README leaves to the operator is done as it says: the image is
// built with `docker build` and loaded into the node; NATS is a
// three-node cluster with deployments/nats/accounts.conf, here started by
// the test on this machine (NATS_URL changed, as the README says for
// another NATS; it speaks TLS only, and its CA goes into the Secret
// rollcall-nats-ca that NATS_CA_FILE reads, as for the Helm chart's); the
// Secrets get real values; the sources point at the simulator, which polls
// every 5 s instead of every 15 min.
func TestKubernetesCluster(t *testing.T) {
	kube := requireKube(t)
	started := time.Now()

	// The image, built as the README says and loaded into the node.
	mustDocker(t, 20*time.Minute, "build", "-f", "deployments/docker/Dockerfile", "-t", dockerImage, ".")
	load := exec.Command("bash", "-c", `set -o pipefail; docker save "$1" | ctr --address "$2" -n k8s.io images import -`, "load", dockerImage, kube.containerd)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("loading %s into the node: %v\n%s", dockerImage, err, out)
	}

	// What runs outside the cluster: NATS, the simulator standing in for
	// Apple and Veeam, and the receivers of the webhook and Slack sinks.
	// NATS speaks TLS only (cluster.conf): the node certificates name the
	// address the pods reach it at, and the pods trust the CA, which the
	// overlay puts into the Secret rollcall-nats-ca (key ca.pem), where the
	// Deployments' NATS_CA_FILE reads it.
	doc, services := loadCompose(t)
	san := "IP:" + kube.hostIP
	if net.ParseIP(kube.hostIP) == nil {
		san = "DNS:" + kube.hostIP
	}
	secretFiles, secretValues := composeSecrets(t, doc, "", san)
	cluster := startComposeNATSOn(t, doc, services, secretFiles, map[string]string{}, kube.hostIP)
	natsCA, err := os.ReadFile(secretFiles["nats_ca"])
	if err != nil {
		t.Fatal(err)
	}
	var natsURLs []string
	for _, name := range cluster.names {
		for k, addr := range cluster.clients {
			if strings.HasPrefix(k, name+":") {
				natsURLs = append(natsURLs, "tls://"+addr)
			}
		}
	}
	sim := simulator.New(simulator.Config{Users: 25, Seed: 1, VPPToken: simulator.DefaultVPPToken, VeeamToken: simulator.DefaultVeeamToken})
	simBase := serveOn(t, kube.hostIP, sim.Handler())
	hooks := &hookRecorder{}
	hookBase := serveOn(t, kube.hostIP, hooks)
	webhookSecret := "whsec_" + "cm9sbGNhbGwta3ViZXJuZXRlcy10ZXN0LXNlY3JldA=="

	// An overlay on the repository's kustomization, as an operator keeps
	// one: the image tag, the Secrets' values, NATS_URL, the sources.
	overlay := t.TempDir()
	base, err := filepath.Abs("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"kustomization.yaml": fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: rollcall
    newName: %s
    newTag: %s
patches:
  - path: secrets.yaml
  - path: poller.yaml
  - path: notifier.yaml
`, rel, strings.Split(dockerImage, ":")[0], strings.Split(dockerImage, ":")[1]),
		"secrets.yaml": fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: rollcall-poller, namespace: rollcall}
stringData:
  vpp-stoken: %q
  veeam-token: %q
  veeam-password: "unused-here"
  nats-password: %q
---
apiVersion: v1
kind: Secret
metadata: {name: rollcall-notifier, namespace: rollcall}
stringData:
  webhook-url: %q
  webhook-secret: %q
  slack-webhook-url: %q
  nats-password: %q
---
apiVersion: v1
kind: Secret
metadata: {name: rollcall-nats-ca, namespace: rollcall}
stringData:
  ca.pem: %q
`, simulator.DefaultVPPToken, simulator.DefaultVeeamToken, secretValues["nats_poller_password"],
			hookBase+"/webhook", webhookSecret, hookBase+"/slack", secretValues["nats_notifier_password"], natsCA),
		"poller.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: rollcall-poller, namespace: rollcall}
spec:
  template:
    spec:
      containers:
        - name: poller
          env:
            - {name: NATS_URL, value: %q}
            - {name: VPP_BASE_URL, value: %q}
            - {name: VPP_INTERVAL, value: 5s}
            - {name: VEEAM_BASE_URL, value: %q}
            - {name: VEEAM_INTERVAL, value: 5s}
            - {name: ALLOW_INSECURE_HTTP, value: "true"}
`, strings.Join(natsURLs, ","), simBase+"/mdm", simBase),
		"notifier.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: rollcall-notifier, namespace: rollcall}
spec:
  template:
    spec:
      containers:
        - name: notifier
          env:
            - {name: NATS_URL, value: %q}
            - {name: ALLOW_INSECURE_HTTP, value: "true"}
`, strings.Join(natsURLs, ",")),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// kubectl apply -k, then wait for both rollouts.
	if out, err := kube.run(time.Minute, "get", "namespace", "rollcall", "--ignore-not-found", "-o", "name"); err != nil || out != "" {
		t.Fatalf("the cluster already has a namespace rollcall (%q), or cannot say (%v); this test needs a throw-away cluster", out, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kube.run(time.Minute, "-n", "rollcall", "get", "all,events", "-o", "wide")
			t.Logf("namespace rollcall:\n%s", lastLines(out, 80))
			for _, app := range []string{"rollcall-poller", "rollcall-notifier"} {
				out, _ := kube.run(time.Minute, "-n", "rollcall", "logs", "-l", "app.kubernetes.io/name="+app, "--tail=40", "--prefix")
				t.Logf("%s logs:\n%s", app, out)
			}
		}
		if _, err := kube.run(3*time.Minute, "delete", "namespace", "rollcall", "--wait", "--timeout=150s"); err != nil {
			t.Errorf("deleting the namespace: %v", err)
		}
	})
	out, err := kube.run(2*time.Minute, "apply", "-k", overlay)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl apply -k:\n%s", out)
	for _, d := range []string{"rollcall-poller", "rollcall-notifier"} {
		if _, err := kube.run(5*time.Minute, "-n", "rollcall", "rollout", "status", "deployment/"+d, "--timeout=270s"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("both Deployments rolled out, every pod ready (probes on /healthz and /readyz) after %s", time.Since(started).Round(time.Second))

	pods := kube.pods(t)
	var pollers []string
	var notifier string
	for name, p := range pods {
		switch p.app {
		case "rollcall-poller":
			pollers = append(pollers, name)
		case "rollcall-notifier":
			notifier = name
		}
	}
	slices.Sort(pollers)
	if len(pollers) != 2 || notifier == "" {
		t.Fatalf("pods %v: want two pollers and a notifier", pods)
	}
	addr := func(pod string) string {
		p := kube.pods(t)[pod]
		return net.JoinHostPort(p.ip, p.port)
	}

	// One replica polls each source.
	holders := dockerLeases(t, pollers, addr, []string{"vpp", "veeam"}, true)
	t.Logf("lease holders %v after %s", holders, time.Since(started).Round(time.Second))

	// A user added at the source reaches the webhook, signed.
	addUser := func(id int64) { (&composeSim{base: simBase}).addVPPUser(t, id) }
	addUser(880001)
	hooks.wait(t, webhookSecret, "880001")
	t.Logf("signed webhook for the new user after %s", time.Since(started).Round(time.Second))

	// The PodDisruptionBudget sees both pollers and allows one disruption.
	testutil.CheckEvery(t, 60*time.Second, pollEvery, "the PodDisruptionBudget counting both pollers", func() error {
		out, err := kube.run(time.Minute, "-n", "rollcall", "get", "pdb", "rollcall-poller", "-o", "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}")
		if err != nil {
			return err
		}
		if out != "2/1" {
			return fmt.Errorf("currentHealthy/disruptionsAllowed = %s", out)
		}
		return nil
	})

	// Delete the pod polling VPP: it releases its lease on SIGTERM, another
	// replica (the survivor, or the pod the Deployment starts in its
	// place) takes the sources over, and events keep arriving.
	deleted := time.Now()
	if _, err := kube.run(2*time.Minute, "-n", "rollcall", "delete", "pod", holders["vpp"], "--wait=true", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	addUser(880002)
	hooks.wait(t, webhookSecret, "880002")
	t.Logf("%s gone %s after the delete; a signed webhook for a user added then came %s later",
		holders["vpp"], gone.Sub(deleted).Round(time.Second), time.Since(gone).Round(time.Second))
	if _, err := kube.run(5*time.Minute, "-n", "rollcall", "rollout", "status", "deployment/rollcall-poller", "--timeout=270s"); err != nil {
		t.Fatal(err)
	}
	var current []string
	testutil.CheckEvery(t, 2*time.Minute, pollEvery, "two ready pollers again", func() error {
		current = current[:0]
		for name, p := range kube.pods(t) {
			if p.app == "rollcall-poller" && p.ready && name != holders["vpp"] {
				current = append(current, name)
			}
		}
		if len(current) != 2 {
			return fmt.Errorf("ready: %v", current)
		}
		return nil
	})
	after := dockerLeases(t, current, addr, []string{"vpp", "veeam"}, false)
	t.Logf("after the deletion %v poll %v (pollers %v)", after, []string{"vpp", "veeam"}, current)

	// No secret in any pod's log, no permission violation on NATS.
	for name := range kube.pods(t) {
		logs, err := kube.run(time.Minute, "-n", "rollcall", "logs", name)
		if err != nil || !strings.Contains(logs, `"level":"INFO"`) {
			t.Errorf("logs of %s: %v %q", name, err, lastLines(logs, 5))
		}
		for _, v := range []string{secretValues["nats_poller_password"], secretValues["nats_notifier_password"], simulator.DefaultVPPToken, simulator.DefaultVeeamToken, webhookSecret, hookBase} {
			if strings.Contains(logs, v) {
				t.Errorf("the log of %s contains a secret (%.12s…)", name, v)
			}
		}
	}
	for i, l := range cluster.violations {
		l.none(t, cluster.names[i])
	}
	t.Logf("Kubernetes deployment checked in %s", time.Since(started).Round(time.Second))
}

type kubeEnv struct {
	kubectl, kubeconfig, hostIP, containerd string
}

func requireKube(t *testing.T) kubeEnv {
	t.Helper()
	k := kubeEnv{
		kubectl:    os.Getenv("ROLLCALL_KUBECTL"),
		kubeconfig: os.Getenv("ROLLCALL_KUBECONFIG"),
		hostIP:     os.Getenv("ROLLCALL_KUBE_HOST_IP"),
		containerd: os.Getenv("ROLLCALL_KUBE_CONTAINERD"),
	}
	if k.kubectl == "" {
		k.kubectl = "kubectl"
	}
	if testing.Short() && os.Getenv("ROLLCALL_KUBE") != "require" {
		t.Skip("SKIPPED in -short mode: the Kubernetes test builds an image and deploys it")
	}
	skip := func(why string) {
		t.Helper()
		if os.Getenv("ROLLCALL_KUBE") == "require" {
			t.Fatalf("ROLLCALL_KUBE=require, but %s", why)
		}
		t.Skipf("SKIPPED: %s; `bash .ci/kube` builds a one-node cluster and prints the variables", why)
	}
	if k.kubeconfig == "" || k.hostIP == "" || k.containerd == "" {
		skip("ROLLCALL_KUBECONFIG, ROLLCALL_KUBE_HOST_IP and ROLLCALL_KUBE_CONTAINERD are not all set")
	}
	if _, err := docker(time.Minute, "version"); err != nil {
		skip("no Docker engine to build the image with: " + err.Error())
	}
	if _, err := k.run(time.Minute, "get", "nodes"); err != nil {
		skip(err.Error())
	}
	return k
}

// run runs kubectl against the cluster from the repository's deployments
// directory and returns its standard output.
func (k kubeEnv) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.kubectl, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return strings.TrimSpace(stdout.String()), nil
}

type kubePod struct {
	app, ip, port string
	ready         bool
}

// pods lists the namespace's pods that are not being deleted.
func (k kubeEnv) pods(t *testing.T) map[string]kubePod {
	t.Helper()
	out, err := k.run(time.Minute, "-n", "rollcall", "get", "pods", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string
				Labels            map[string]string
				DeletionTimestamp *time.Time
			}
			Spec struct {
				Containers []struct {
					Ports []struct{ ContainerPort int }
				}
			}
			Status struct {
				PodIP      string
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	pods := map[string]kubePod{}
	for _, it := range list.Items {
		if it.Metadata.DeletionTimestamp != nil {
			continue
		}
		p := kubePod{app: it.Metadata.Labels["app.kubernetes.io/name"], ip: it.Status.PodIP}
		if len(it.Spec.Containers) > 0 && len(it.Spec.Containers[0].Ports) > 0 {
			p.port = fmt.Sprint(it.Spec.Containers[0].Ports[0].ContainerPort)
		}
		for _, c := range it.Status.Conditions {
			p.ready = p.ready || (c.Type == "Ready" && c.Status == "True")
		}
		pods[it.Metadata.Name] = p
	}
	return pods
}

// serveOn serves h on a free port of ip until the test ends and returns
// its base URL.
func serveOn(t *testing.T, ip string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// hookRecorder receives the webhook and Slack sinks' requests.
type hookRecorder struct {
	mu   sync.Mutex
	reqs []hookRequest
}

type hookRequest struct {
	path   string
	header http.Header
	body   []byte
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h.mu.Lock()
	h.reqs = append(h.reqs, hookRequest{r.URL.Path, r.Header.Clone(), b})
	h.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// wait waits for a webhook about the VPP user whose signature verifies
// with secret.
func (h *hookRecorder) wait(t *testing.T, secret, id string) {
	t.Helper()
	testutil.CheckFor(t, 90*time.Second, "a signed webhook for VPP user "+id, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.reqs {
			if r.path != "/webhook" {
				continue
			}
			// Binary mode (the default): the body is the event's data;
			// structured mode: the whole event.
			var e struct {
				User struct{ Source, ID string }
				Data struct{ User struct{ Source, ID string } }
			}
			if json.Unmarshal(r.body, &e) != nil {
				continue
			}
			if u := e.User; u.Source != "vpp" || u.ID != id {
				if u := e.Data.User; u.Source != "vpp" || u.ID != id {
					continue
				}
			}
			if err := webhook.Verify([]string{secret}, r.header, r.body, time.Now(), 5*time.Minute); err != nil {
				return fmt.Errorf("the webhook for %s does not verify: %w", id, err)
			}
			return nil
		}
		return fmt.Errorf("not among %d requests", len(h.reqs))
	})
}
