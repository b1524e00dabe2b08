package deployments

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/natsutil"
	"github.com/rollcall/rollcall/internal/sinks/webhook"
)

// k8sNotManifests are YAML files in deployments/kubernetes that are not
// Kubernetes objects.
var k8sNotManifests = []string{"kustomization.yaml", "nats-helm-values.yaml"}

type k8sObject struct {
	file string
	obj  map[string]any
}

func (o k8sObject) kind() string { return ystr(o.obj["kind"]) }
func (o k8sObject) name() string { return ystr(ydig(o.obj, "metadata", "name")) }

func loadKubernetes(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []k8sObject
	for _, f := range files {
		if slices.Contains(k8sNotManifests, filepath.Base(f)) {
			continue
		}
		docs, err := readYAMLDocs(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, d := range docs {
			out = append(out, k8sObject{file: filepath.Base(f), obj: d})
		}
	}
	return out
}

// TestKubernetesManifests checks every object has apiVersion, kind and a
// name, that kustomization.yaml lists existing files and every manifest
// but the optional ServiceMonitor, and that Services select pods of a
// Deployment on a port the pods declare.
func TestKubernetesManifests(t *testing.T) {
	objs := loadKubernetes(t)
	if len(objs) == 0 {
		t.Fatal("no Kubernetes manifests")
	}
	files := map[string]bool{}
	for _, o := range objs {
		files[o.file] = true
		if ystr(o.obj["apiVersion"]) == "" || o.kind() == "" || o.name() == "" {
			t.Errorf("%s: an object without apiVersion, kind or metadata.name", o.file)
		}
		if ns := ystr(ydig(o.obj, "metadata", "namespace")); ns != "" && o.kind() != "Namespace" {
			t.Errorf("%s: %s/%s sets namespace %s; kustomization.yaml sets it", o.file, o.kind(), o.name(), ns)
		}
	}
	docs, err := readYAMLDocs("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var resources []string
	for _, r := range ylist(docs[0]["resources"]) {
		resources = append(resources, ystr(r))
		if _, err := os.Stat(filepath.Join("kubernetes", ystr(r))); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
	for f := range files {
		if f != "servicemonitor.yaml" && !slices.Contains(resources, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
	deployments := map[string]k8sObject{}
	for _, o := range objs {
		if o.kind() == "Deployment" {
			deployments[o.name()] = o
		}
	}
	for _, o := range objs {
		if o.kind() != "Service" {
			continue
		}
		sel := ymap(ydig(o.obj, "spec", "selector"))
		var match *k8sObject
		for _, d := range deployments {
			labels := ymap(ydig(d.obj, "spec", "template", "metadata", "labels"))
			ok := len(sel) > 0
			for k, v := range sel {
				ok = ok && ystr(labels[k]) == ystr(v)
			}
			if ok {
				match = &d
			}
		}
		if match == nil {
			t.Errorf("Service %s selects no Deployment's pods", o.name())
			continue
		}
		ports := containerPorts(match.obj)
		for _, p := range ylist(ydig(o.obj, "spec", "ports")) {
			tp := ystr(ydig(p, "targetPort"))
			if _, ok := ports[tp]; !ok && !slices.Contains(mapValues(ports), tp) {
				t.Errorf("Service %s: targetPort %s is not a port of %s (%v)", o.name(), tp, match.name(), ports)
			}
		}
	}
}

// containerPorts maps port names to numbers over a Deployment's
// containers.
func containerPorts(dep map[string]any) map[string]string {
	out := map[string]string{}
	for _, c := range ylist(ydig(dep, "spec", "template", "spec", "containers")) {
		for _, p := range ylist(ydig(c, "ports")) {
			out[ystr(ydig(p, "name"))] = ystr(ydig(p, "containerPort"))
		}
	}
	return out
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestKubernetesDeployments checks the poller (two replicas) and notifier
// (one, replaced with Recreate so that two never deliver at once)
// Deployments: the variables they set are ones their command reads;
// liveness on /healthz and readiness on /readyz at the port HTTP_ADDR
// listens on; resource requests and a memory limit; non-root with a
// read-only root filesystem; credentials only from Secrets: no credential
// variable with a plain value, every *_FILE path inside a mounted Secret
// whose manifest has that key; a NATS cluster with three replicas.
func TestKubernetesDeployments(t *testing.T) {
	objs := loadKubernetes(t)
	secrets := map[string]map[string]bool{}
	for _, o := range objs {
		if o.kind() != "Secret" {
			continue
		}
		keys := map[string]bool{}
		for _, field := range []string{"data", "stringData"} {
			for k := range ymap(o.obj[field]) {
				keys[k] = true
			}
		}
		secrets[o.name()] = keys
	}
	want := map[string]int{"poller": 2, "notifier": 1}
	seen := map[string]bool{}
	for _, o := range objs {
		if o.kind() != "Deployment" {
			continue
		}
		spec := ymap(o.obj["spec"])
		pod := ymap(ydig(spec, "template", "spec"))
		if sel, labels := ymap(ydig(spec, "selector", "matchLabels")), ymap(ydig(spec, "template", "metadata", "labels")); len(sel) == 0 {
			t.Errorf("%s: no selector", o.name())
		} else {
			for k, v := range sel {
				if ystr(labels[k]) != ystr(v) {
					t.Errorf("%s: selector %s=%v does not match the pod labels", o.name(), k, v)
				}
			}
		}
		// Secret volumes by name.
		secretVolumes := map[string]string{}
		for _, v := range ylist(pod["volumes"]) {
			if s := ystr(ydig(v, "secret", "secretName")); s != "" {
				secretVolumes[ystr(ydig(v, "name"))] = s
			}
		}
		podRunAsNonRoot := ydig(pod, "securityContext", "runAsNonRoot") == true
		for _, c := range ylist(pod["containers"]) {
			cname := o.name() + "/" + ystr(ydig(c, "name"))
			args := append(stringList(ydig(c, "command")), stringList(ydig(c, "args"))...)
			if len(args) == 0 {
				t.Errorf("%s: no command or args naming the rollcall command", cname)
				continue
			}
			cmd := args[0]
			n, ok := want[cmd]
			if !ok {
				t.Errorf("%s runs %q, want poller or notifier", cname, cmd)
				continue
			}
			seen[cmd] = true
			if got := ydig(spec, "replicas"); ystr(got) != strconv.Itoa(n) {
				t.Errorf("%s: replicas %v, want %d", o.name(), got, n)
			}
			if cmd == "notifier" && ystr(ydig(spec, "strategy", "type")) != "Recreate" {
				t.Errorf("%s: strategy %v; want Recreate so that two notifiers never run at once", o.name(), ydig(spec, "strategy", "type"))
			}
			known := serviceVars(t, cmd)
			env := map[string]map[string]any{}
			for _, e := range ylist(ydig(c, "env")) {
				env[ystr(ydig(e, "name"))] = ymap(e)
			}
			if len(ylist(ydig(c, "envFrom"))) > 0 {
				t.Errorf("%s: envFrom hides which variables are set from this test; list them under env", cname)
			}
			// Mounts of Secret volumes: mount path → secret name.
			secretMounts := map[string]string{}
			for _, m := range ylist(ydig(c, "volumeMounts")) {
				if s, ok := secretVolumes[ystr(ydig(m, "name"))]; ok {
					if ydig(m, "subPath") != nil {
						t.Errorf("%s: Secret %s mounted with subPath never sees a rotated value", cname, s)
					}
					secretMounts[ystr(ydig(m, "mountPath"))] = s
				}
			}
			for name, e := range env {
				if !known(name) {
					t.Errorf("%s sets %s, which %s does not read", cname, name, cmd)
				}
				value, hasValue := e["value"]
				if isSecretVar(name) && hasValue {
					t.Errorf("%s: credential %s has a plain-text value; use %s_FILE with a Secret volume", cname, name, name)
				}
				if isSecretVar(name) && ydig(e, "valueFrom", "secretKeyRef") == nil {
					t.Errorf("%s: credential %s does not come from a Secret", cname, name)
				}
				if strings.HasSuffix(name, "_FILE") && isSecretVar(strings.TrimSuffix(name, "_FILE")) {
					p := ystr(value)
					dir, key := path.Split(p)
					secret, ok := secretMounts[strings.TrimSuffix(dir, "/")]
					switch {
					case !ok:
						t.Errorf("%s: %s=%s is not in a mounted Secret (%v)", cname, name, p, secretMounts)
					case secrets[secret] != nil && !secrets[secret][key]:
						t.Errorf("%s: %s=%s: Secret %s has no key %s", cname, name, p, secret, key)
					}
				}
			}
			// HTTP_ADDR must listen beyond loopback, on the probed port.
			addr := ystr(env["HTTP_ADDR"]["value"])
			host, port := hostPort(addr)
			if host == "127.0.0.1" || host == "localhost" || port == "" {
				t.Errorf("%s: HTTP_ADDR %q must listen on the pod's address for probes and scraping", cname, addr)
			}
			ports := map[string]string{}
			for _, p := range ylist(ydig(c, "ports")) {
				ports[ystr(ydig(p, "name"))] = ystr(ydig(p, "containerPort"))
			}
			for probe, wantPath := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				get := ydig(c, probe, "httpGet")
				if get == nil {
					t.Errorf("%s: no %s httpGet", cname, probe)
					continue
				}
				if p := ystr(ydig(get, "path")); p != wantPath {
					t.Errorf("%s: %s path %s, want %s", cname, probe, p, wantPath)
				}
				pp := ystr(ydig(get, "port"))
				if named, ok := ports[pp]; ok {
					pp = named
				}
				if pp != port {
					t.Errorf("%s: %s port %s, but HTTP_ADDR=%s", cname, probe, ystr(ydig(get, "port")), addr)
				}
			}
			for _, r := range []string{"cpu", "memory"} {
				if ydig(c, "resources", "requests", r) == nil {
					t.Errorf("%s: no %s request", cname, r)
				}
			}
			if ydig(c, "resources", "limits", "memory") == nil {
				t.Errorf("%s: no memory limit", cname)
			}
			sc := ymap(ydig(c, "securityContext"))
			if !podRunAsNonRoot && sc["runAsNonRoot"] != true {
				t.Errorf("%s: runAsNonRoot is not set", cname)
			}
			if u := ydig(pod, "securityContext", "runAsUser"); u != nil && ystr(u) == "0" {
				t.Errorf("%s: runs as root", cname)
			}
			if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
				t.Errorf("%s: want readOnlyRootFilesystem: true and allowPrivilegeEscalation: false", cname)
			}
			if !slices.Contains(stringList(ydig(sc, "capabilities", "drop")), "ALL") {
				t.Errorf("%s: capabilities are not dropped", cname)
			}
			// The NATS cluster.
			// TLS only: TestKubernetesNATSTLS checks NATS_URL and NATS_CA_FILE.
			if u := ystr(env["NATS_URL"]["value"]); !strings.HasPrefix(u, "tls://") {
				t.Errorf("%s: NATS_URL %q: want the NATS cluster's Service over TLS (tls://)", cname, u)
			}
			if r := ystr(env["NATS_REPLICAS"]["value"]); r != "3" {
				t.Errorf("%s: NATS_REPLICAS %q, want 3 on a three-node cluster", cname, r)
			}
			if ystr(env["NATS_USER"]["value"]) == "" && env["NATS_CREDS"] == nil {
				t.Errorf("%s: connects to NATS without a user", cname)
			}
		}
	}
	for cmd := range want {
		if !seen[cmd] {
			t.Errorf("no Deployment runs %s", cmd)
		}
	}
}

// TestKubernetesNATSUsers checks the NATS users the Deployments log in as
// are users of deployments/nats/accounts.conf, and that the Helm values
// give the NATS servers every password variable accounts.conf reads.
func TestKubernetesNATSUsers(t *testing.T) {
	accounts := natsConfigText(t, "nats/accounts.conf")
	for _, o := range loadKubernetes(t) {
		if o.kind() != "Deployment" {
			continue
		}
		for _, c := range ylist(ydig(o.obj, "spec", "template", "spec", "containers")) {
			for _, e := range ylist(ydig(c, "env")) {
				if ystr(ydig(e, "name")) != "NATS_USER" {
					continue
				}
				user := ystr(ydig(e, "value"))
				if !strings.Contains(accounts, "user: "+user+",") {
					t.Errorf("%s: NATS_USER %s is not a user in nats/accounts.conf", o.name(), user)
				}
			}
		}
	}
	docs, err := readYAMLDocs("kubernetes/nats-helm-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := ymap(ydig(docs[0], "container", "env"))
	for _, name := range []string{"ROLLCALL_POLLER_PASSWORD", "ROLLCALL_NOTIFIER_PASSWORD", "ROLLCALL_REPLAY_PASSWORD", "NATS_SYSTEM_PASSWORD"} {
		if !strings.Contains(accounts, "$"+name) {
			continue // no longer read by accounts.conf
		}
		if ydig(env, name, "valueFrom", "secretKeyRef") == nil {
			t.Errorf("nats-helm-values.yaml: container.env.%s does not come from a Secret", name)
		}
	}
	for _, line := range strings.Split(accounts, "\n") {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(strings.Trim(f, ",}"), "$"); ok && strings.HasSuffix(v, "_PASSWORD") && env[v] == nil {
				t.Errorf("accounts.conf reads $%s, which nats-helm-values.yaml does not set", v)
			}
		}
	}
}

// TestKubernetesWebhookSecretPlaceholder checks that the webhook signing
// secret shipped in secrets.yaml is a placeholder no notifier accepts, so
// that the manifests applied unchanged never sign webhooks with a key
// published in this repository: the webhook sink's own parser
// (webhook.New) refuses it, and the notifier, started with the
// Deployment's environment and the Secret's values as its mounted files,
// refuses to start, naming WEBHOOK_SECRET.
func TestKubernetesWebhookSecretPlaceholder(t *testing.T) {
	var data map[string]any
	var env map[string]string
	for _, o := range loadKubernetes(t) {
		switch {
		case o.kind() == "Secret" && o.name() == "rollcall-notifier":
			data = ymap(o.obj["stringData"])
		case o.kind() == "Deployment" && o.name() == "rollcall-notifier":
			env = map[string]string{}
			for _, c := range ylist(ydig(o.obj, "spec", "template", "spec", "containers")) {
				for _, e := range ylist(ydig(c, "env")) {
					env[ystr(ydig(e, "name"))] = ystr(ydig(e, "value"))
				}
			}
		}
	}
	placeholder := ystr(data["webhook-secret"])
	if placeholder == "" || env == nil {
		t.Fatal("no webhook-secret in the Secret rollcall-notifier, or no Deployment rollcall-notifier")
	}
	secrets := strings.Fields(placeholder) // as the notifier splits WEBHOOK_SECRET
	if _, err := webhook.New(webhook.Config{URL: "https://hooks.example.com/rollcall", Secrets: secrets}); err == nil {
		t.Errorf("the webhook sink accepts the placeholder secret %q: it would sign with a published key", placeholder)
	}

	// The notifier as the pod runs it: the Secret mounted as files.
	dir := t.TempDir()
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(ystr(v)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(env["WEBHOOK_SECRET_FILE"], "/run/secrets/rollcall/") {
		t.Fatalf("WEBHOOK_SECRET_FILE=%q: want the mounted Secret", env["WEBHOOK_SECRET_FILE"])
	}
	for k, v := range env {
		if rest, ok := strings.CutPrefix(v, "/run/secrets/rollcall/"); ok {
			env[k] = filepath.Join(dir, rest)
		}
	}
	env["NATS_URL"], env["HTTP_ADDR"] = "nats://127.0.0.1:1", "" // never reached: it must stop before
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	err := notifierapp.Run(ctx, envconfig.MapLookuper(env), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET") && !strings.Contains(err.Error(), "secret") || ctx.Err() != nil {
		t.Errorf("the notifier with the shipped placeholder secret: %v (want a refusal at start naming the secret)\n%s", err, stderr.String())
	}
	t.Logf("the notifier refused to start: %v", err)
	if strings.Contains(fmt.Sprint(err)+stderr.String(), placeholder) {
		t.Error("the refusal quotes the secret")
	}
}

// helmValues reads nats-helm-values.yaml: its values and its text, whose
// comments hold the commands that make the Secrets it reads.
func helmValues(t *testing.T) (map[string]any, string) {
	t.Helper()
	const file = "kubernetes/nats-helm-values.yaml"
	docs, err := readYAMLDocs(file)
	if err != nil || len(docs) != 1 {
		t.Fatalf("%s: %v (%d documents)", file, err, len(docs))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return docs[0], string(b)
}

// helmCommands joins the commented shell lines of the values file (those
// indented under "#   ") into commands, continuation lines included.
func helmCommands(text string) []string {
	var out []string
	cur := ""
	for _, line := range strings.Split(text, "\n") {
		l, ok := strings.CutPrefix(line, "#   ")
		if !ok {
			if cur != "" {
				out, cur = append(out, cur), ""
			}
			continue
		}
		l = strings.TrimSpace(l)
		if more, cont := strings.CutSuffix(l, `\`); cont {
			cur += strings.TrimSpace(more) + " "
			continue
		}
		out, cur = append(out, cur+l), ""
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// helmSecretKeys returns the keys the documented `kubectl create secret
// generic NAME --from-file=KEY=FILE …` gives the Secret name, as key →
// file; nil if no command creates it.
func helmSecretKeys(text, name string) map[string]string {
	for _, cmd := range helmCommands(text) {
		f := strings.Fields(cmd)
		i := slices.Index(f, "generic")
		if i < 1 || f[i-1] != "secret" || i+1 >= len(f) || f[i+1] != name {
			continue
		}
		keys := map[string]string{}
		for _, a := range f[i+2:] {
			for _, flag := range []string{"--from-file=", "--from-literal="} {
				if kv, ok := strings.CutPrefix(a, flag); ok {
					k, v, _ := strings.Cut(kv, "=")
					keys[k] = v
				}
			}
		}
		return keys
	}
	return nil
}

// helmChart is where the documented `helm upgrade --install` puts the
// chart: its release, namespace, and the names the chart gives the
// StatefulSet (and Service) and the headless Service.
type helmChart struct{ release, namespace, fullname, headless string }

func helmRelease(t *testing.T, text string) helmChart {
	t.Helper()
	for _, cmd := range helmCommands(text) {
		f := strings.Fields(cmd)
		if len(f) < 4 || f[0] != "helm" || f[1] != "upgrade" || f[2] != "--install" {
			continue
		}
		c := helmChart{release: f[3], namespace: "default"}
		if i := slices.Index(f, "-n"); i > 0 && i+1 < len(f) {
			c.namespace = f[i+1]
		}
		// The chart's nats.fullname, without fullnameOverride.
		c.fullname = c.release
		if !strings.Contains(c.release, "nats") {
			c.fullname = c.release + "-nats"
		}
		c.headless = c.fullname + "-headless"
		return c
	}
	t.Fatal("nats-helm-values.yaml: no `helm upgrade --install RELEASE CHART -n NAMESPACE` in its comments")
	return helmChart{}
}

// TestHelmNATSTLS checks that nats-helm-values.yaml makes the chart's NATS
// as TLS-only as deployments/nats/cluster.conf: client TLS
// (config.nats.tls) and route TLS (config.cluster.tls) on, with the node
// certificate and key from a Secret whose documented creation gives it
// those keys; the CA (tlsCA) in every tls block, from a Secret that has
// it; routes authenticated by certificate as in cluster.conf
// (verify_and_map, the route identity as the cluster's authorization
// user) and no password in the route URLs; and monitoring kept inside the
// pod: not in the Service, listening on loopback, with the chart's
// probes, which the kubelet could no longer reach, run in the container.
func TestHelmNATSTLS(t *testing.T) {
	v, text := helmValues(t)
	cfg := ymap(v["config"])
	if ydig(cfg, "cluster", "enabled") != true || ystr(ydig(cfg, "cluster", "replicas")) != "3" {
		t.Errorf("config.cluster: enabled %v, replicas %v; want a three-node cluster", ydig(cfg, "cluster", "enabled"), ydig(cfg, "cluster", "replicas"))
	}
	if b, err := os.ReadFile("nats/cluster.conf"); err != nil || !strings.Contains(string(b), `user: "`+routeIdentity+`"`) {
		t.Fatalf("nats/cluster.conf no longer names the route identity %s; update this test", routeIdentity)
	}

	// Client and route TLS, from Secrets the comments say how to make.
	for _, proto := range []string{"nats", "cluster"} {
		tls := ymap(ydig(cfg, proto, "tls"))
		where := "config." + proto + ".tls"
		if tls["enabled"] != true {
			t.Errorf("%s.enabled is %v: the chart's NATS would accept plain-text %s", where, tls["enabled"], map[string]string{"nats": "clients", "cluster": "routes"}[proto])
			continue
		}
		secret := ystr(tls["secretName"])
		if secret == "" {
			t.Errorf("%s: no secretName, so the chart mounts no certificate", where)
			continue
		}
		keys := helmSecretKeys(text, secret)
		if keys == nil {
			t.Errorf("%s: the comments do not say how to create the Secret %s (kubectl -n … create secret generic %s --from-file=…)", where, secret, secret)
			continue
		}
		for _, k := range []string{cmp.Or(ystr(tls["cert"]), "tls.crt"), cmp.Or(ystr(tls["key"]), "tls.key")} {
			if keys[k] == "" {
				t.Errorf("%s reads key %s of the Secret %s, which its documented creation does not give it (%v)", where, k, secret, keys)
			}
		}
		if proto == "nats" && tls["merge"] != nil && ydig(tls, "merge", "allow_non_tls") == true {
			t.Errorf("%s.merge: allow_non_tls lets plain-text clients in", where)
		}
	}
	ca := ymap(v["tlsCA"])
	caSecret := ystr(ca["secretName"])
	if ca["enabled"] != true || caSecret == "" && ystr(ca["configMapName"]) == "" {
		t.Errorf("tlsCA: enabled %v, secretName %q, configMapName %q: the servers get no CA to verify routes (and nats-box clients) against", ca["enabled"], caSecret, ystr(ca["configMapName"]))
	} else if caSecret != "" {
		if keys := helmSecretKeys(text, caSecret); keys[cmp.Or(ystr(ca["key"]), "ca.crt")] == "" {
			t.Errorf("tlsCA reads key %s of the Secret %s, which its documented creation does not give it (%v)", cmp.Or(ystr(ca["key"]), "ca.crt"), caSecret, keys)
		}
	}

	// Routes: mutual TLS mapped to the route identity, as cluster.conf.
	if ydig(cfg, "cluster", "tls", "merge", "verify_and_map") != true {
		t.Error("config.cluster.tls.merge.verify_and_map is not true: a node is not authenticated by its certificate")
	}
	if u := ystr(ydig(cfg, "cluster", "merge", "authorization", "user")); u != routeIdentity {
		t.Errorf("config.cluster.merge.authorization.user is %q, want %q (the node certificate's subject, as in cluster.conf)", u, routeIdentity)
	}
	if ydig(cfg, "cluster", "merge", "authorization", "password") != nil {
		t.Error("config.cluster.merge.authorization has a password; routes authenticate by certificate")
	}
	if ydig(cfg, "cluster", "routeURLs", "user") != nil || ydig(cfg, "cluster", "routeURLs", "password") != nil {
		t.Error("config.cluster.routeURLs has a user or password: it would be written into every route URL")
	}

	// Monitoring stays inside the pod.
	if ydig(v, "service", "ports", "monitor", "enabled") == true {
		t.Error("service.ports.monitor.enabled: the Service would expose monitoring")
	}
	if ydig(cfg, "monitor", "enabled") == false {
		return // no monitoring port, and no probes from the chart
	}
	port := cmp.Or(ystr(ydig(cfg, "monitor", "port")), "8222")
	host, p := hostPort(ystr(ydig(cfg, "merge", "http")))
	if host != "127.0.0.1" || p != port {
		t.Errorf("config.merge.http is %q; want 127.0.0.1:%s, or monitoring (http_port) listens on every interface of the pod", ystr(ydig(cfg, "merge", "http")), port)
	}
	removed := false
	for _, op := range ylist(ydig(cfg, "patch")) {
		removed = removed || ystr(ydig(op, "op")) == "remove" && ystr(ydig(op, "path")) == "/http_port"
	}
	if !removed {
		t.Error("config.patch does not remove the chart's http_port (every interface); monitoring must be on loopback only")
	}
	probes := map[string]map[string]any{}
	for _, op := range ylist(ydig(v, "container", "patch")) {
		if o := ystr(ydig(op, "op")); o == "replace" || o == "add" {
			probes[strings.TrimPrefix(ystr(ydig(op, "path")), "/")] = ymap(ydig(op, "value"))
		}
	}
	for _, probe := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
		pv := probes[probe]
		cmd := strings.Join(stringList(ydig(pv, "exec", "command")), " ")
		if pv == nil || pv["httpGet"] != nil || !strings.Contains(cmd, "http://127.0.0.1:"+port+"/healthz") {
			t.Errorf("container.patch: %s is %v; the chart's httpGet cannot reach monitoring on loopback: want an exec probe of http://127.0.0.1:%s/healthz…", probe, pv, port)
		}
	}
}

// TestKubernetesNATSTLS checks that the poller and notifier Deployments
// reach NATS as the Helm values serve it: NATS_URL names the chart's
// Service on its client port with tls:// (every URL of the list), so a
// connection without TLS is never tried, and NATS_CA_FILE is a file of a
// Secret or ConfigMap the container mounts (as a directory) whose manifest
// has that key, so the client verifies the servers' certificate.
func TestKubernetesNATSTLS(t *testing.T) {
	v, text := helmValues(t)
	chart := helmRelease(t, text)
	clientPort := cmp.Or(ystr(ydig(v, "config", "nats", "port")), "4222")
	serviceHosts := []string{chart.fullname + "." + chart.namespace + ".svc.cluster.local", chart.fullname + "." + chart.namespace + ".svc", chart.fullname + "." + chart.namespace}
	objs := loadKubernetes(t)
	keys := map[string]map[string]bool{} // "Secret/name" → keys
	for _, o := range objs {
		if o.kind() != "Secret" && o.kind() != "ConfigMap" {
			continue
		}
		k := map[string]bool{}
		for _, field := range []string{"data", "stringData"} {
			for key := range ymap(o.obj[field]) {
				k[key] = true
			}
		}
		keys[o.kind()+"/"+o.name()] = k
	}
	n := 0
	for _, o := range objs {
		if o.kind() != "Deployment" {
			continue
		}
		pod := ymap(ydig(o.obj, "spec", "template", "spec"))
		volumes := map[string]string{} // volume name → "Secret/name" or "ConfigMap/name"
		for _, vol := range ylist(pod["volumes"]) {
			if s := ystr(ydig(vol, "secret", "secretName")); s != "" {
				volumes[ystr(ydig(vol, "name"))] = "Secret/" + s
			}
			if c := ystr(ydig(vol, "configMap", "name")); c != "" {
				volumes[ystr(ydig(vol, "name"))] = "ConfigMap/" + c
			}
		}
		for _, c := range ylist(pod["containers"]) {
			n++
			cname := o.name() + "/" + ystr(ydig(c, "name"))
			env := map[string]string{}
			for _, e := range ylist(ydig(c, "env")) {
				env[ystr(ydig(e, "name"))] = ystr(ydig(e, "value"))
			}
			urls := strings.Split(env["NATS_URL"], ",")
			for _, u := range urls {
				u = strings.TrimSpace(u)
				if !strings.HasPrefix(u, "tls://") {
					t.Errorf("%s: NATS_URL %q: want tls:// (the chart's NATS speaks TLS only, and a client must not try without it)", cname, u)
				}
				if host, port := hostPort(u); !slices.Contains(serviceHosts, host) || port != clientPort {
					t.Errorf("%s: NATS_URL %q is not the chart's Service %s on port %s", cname, u, serviceHosts[0], clientPort)
				}
			}
			caFile := env["NATS_CA_FILE"]
			if caFile == "" {
				t.Errorf("%s: no NATS_CA_FILE: the client cannot verify the NATS servers' certificate", cname)
				continue
			}
			dir, key := path.Split(caFile)
			var from string
			for _, m := range ylist(ydig(c, "volumeMounts")) {
				if ystr(ydig(m, "mountPath")) == strings.TrimSuffix(dir, "/") && ydig(m, "subPath") == nil {
					from = volumes[ystr(ydig(m, "name"))]
				}
			}
			switch {
			case from == "":
				t.Errorf("%s: NATS_CA_FILE=%s is not in a Secret or ConfigMap the container mounts as a directory", cname, caFile)
			case keys[from] == nil:
				t.Errorf("%s: NATS_CA_FILE=%s comes from %s, which no manifest here defines", cname, caFile, from)
			case !keys[from][key]:
				t.Errorf("%s: NATS_CA_FILE=%s: %s has no key %s", cname, caFile, from, key)
			}
		}
	}
	if n < 2 {
		t.Fatalf("%d containers in Deployments, want the poller's and the notifier's", n)
	}
}

// TestKubernetesNATSCertificate runs the commands the comments of
// nats-helm-values.yaml give for the Secret nats-tls (gen-certs.sh with
// its NATS_CERT_EXTRA_SANS) and checks that the certificate they make is
// one the chart's NATS can use: signed by the CA that goes into the
// Secret, for TLS server and client use, with the route identity as
// subject, and naming every host it is reached by: the Service the
// Deployments' NATS_URL dials, the Service name nats-box dials, and each
// pod's route URL host the chart writes. Then three nodes started from
// cluster.conf, all with that one certificate as the chart mounts it,
// form a cluster over mutual-TLS routes; a client with the CA, as the
// Deployments connect, gets in, and a plain-text one is refused.
func TestKubernetesNATSCertificate(t *testing.T) {
	v, text := helmValues(t)
	chart := helmRelease(t, text)
	cfg := ymap(v["config"])
	secret := ystr(ydig(cfg, "nats", "tls", "secretName"))
	if secret == "" || secret != ystr(ydig(cfg, "cluster", "tls", "secretName")) {
		t.Fatalf("config.nats.tls.secretName %q, config.cluster.tls.secretName %q: want the one Secret the documented commands make", secret, ystr(ydig(cfg, "cluster", "tls", "secretName")))
	}
	keys := helmSecretKeys(text, secret)
	var gen []string
	for _, cmd := range helmCommands(text) {
		if strings.Contains(cmd, "gen-certs.sh") {
			gen = strings.Fields(cmd)
		}
	}
	i := slices.IndexFunc(gen, func(s string) bool { return strings.HasSuffix(s, "gen-certs.sh") })
	if i < 0 || i+2 >= len(gen) {
		t.Fatalf("nats-helm-values.yaml: no `sh deployments/nats/gen-certs.sh DIR NODE` in its comments (%q)", gen)
	}
	var extra string
	for _, w := range gen[:i] {
		if e, ok := strings.CutPrefix(w, "NATS_CERT_EXTRA_SANS="); ok {
			extra = strings.Trim(e, `'"`)
		}
	}
	outDir, nodes := gen[i+1], gen[i+2:]
	dir := genCerts(t, "nats/gen-certs.sh", t.TempDir(), nodes, extra)
	file := func(key string) string {
		rel, ok := strings.CutPrefix(keys[key], outDir+"/")
		if !ok {
			t.Fatalf("the Secret %s's key %s is %q, not a file gen-certs.sh writes into %s", secret, key, keys[key], outDir)
		}
		return filepath.Join(dir, rel)
	}
	certFile := file(cmp.Or(ystr(ydig(cfg, "nats", "tls", "cert")), "tls.crt"))
	keyFile := file(cmp.Or(ystr(ydig(cfg, "nats", "tls", "key")), "tls.key"))
	caFile := file(cmp.Or(ystr(ydig(v, "tlsCA", "key")), "ca.crt"))

	readCert := func(f string) *x509.Certificate {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", f)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cert, caCert := readCert(certFile), readCert(caFile)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if cert.Subject.String() != routeIdentity {
		t.Errorf("the node certificate's subject is %q, want %q: verify_and_map would not let the nodes route to each other", cert.Subject, routeIdentity)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("the node certificate does not verify against the CA for %v: %v", usage, err)
		}
	}

	// Every host it is dialled at.
	hosts := map[string]string{chart.fullname: "nats-box (nats://" + chart.fullname + ")"}
	for _, o := range loadKubernetes(t) {
		if o.kind() != "Deployment" {
			continue
		}
		for _, c := range ylist(ydig(o.obj, "spec", "template", "spec", "containers")) {
			for _, e := range ylist(ydig(c, "env")) {
				if ystr(ydig(e, "name")) == "NATS_URL" {
					for _, u := range strings.Split(ystr(ydig(e, "value")), ",") {
						host, _ := hostPort(strings.TrimSpace(u))
						hosts[host] = o.name() + " (NATS_URL)"
					}
				}
			}
		}
	}
	domain := chart.headless
	if ydig(cfg, "cluster", "routeURLs", "useFQDN") == true {
		domain += "." + chart.namespace + ".svc." + cmp.Or(ystr(ydig(cfg, "cluster", "routeURLs", "k8sClusterDomain")), "cluster.local")
	}
	replicas, _ := strconv.Atoi(cmp.Or(ystr(ydig(cfg, "cluster", "replicas")), "3"))
	for i := range replicas {
		hosts[fmt.Sprintf("%s-%d.%s", chart.fullname, i, domain)] = "the chart's route URLs"
	}
	for host, who := range hosts {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("%s dials %s, which the certificate does not name: %v (SANs %v)", who, host, err, cert.DNSNames)
		}
	}

	// One certificate for every node, as the chart mounts it.
	pw := setPasswords(t)
	node := nodeTLS{ca: caFile, cert: certFile, key: keyFile}
	c := startTLSCluster(t, "nats/cluster.conf", []string{"nats-0", "nats-1", "nats-2"}, func(int) nodeTLS { return node })
	tlsURLs := strings.ReplaceAll(c.urls(), "nats://", "tls://")
	poller := connectWith(t, natsutil.ClientConfig{URL: tlsURLs, Name: "test-poller", User: "poller", Password: pw["poller"], CAFile: caFile})
	if _, err := poller.nc.TLSConnectionState(); err != nil {
		t.Errorf("the poller's connection is not TLS: %v", err)
	}
	if err := plainTextClient(c.servers[0].ClientURL(), "poller", pw["poller"]); err != nil {
		t.Error(err)
	}
}
