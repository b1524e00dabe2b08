package deployments

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
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
			if u := ystr(env["NATS_URL"]["value"]); !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
				t.Errorf("%s: NATS_URL %q: want the NATS cluster's Service (nats:// or tls://)", cname, u)
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
