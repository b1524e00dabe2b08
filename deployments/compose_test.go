package deployments

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rollcall/rollcall/internal/simulator"
)

const composeFile = "compose/compose.yaml"

// composeService is one service of compose.yaml with what the checks read.
type composeService struct {
	name    string
	raw     map[string]any
	command []string // entrypoint + command, as the container runs it
	env     map[string]string
	mounts  map[string]string // container path → host path (binds, relative to deployments/compose)
}

// rollcallCommand is poller, notifier (also for replay) or simulator when
// the service runs a rollcall binary, else "".
func (s composeService) rollcallCommand() string {
	if len(s.command) == 0 {
		return ""
	}
	switch s.command[0] {
	case "poller", "notifier", "simulator":
		return s.command[0]
	}
	return ""
}

// hostFile maps a path inside the container to the repository file a bind
// mount puts there ("" when no bind covers it).
func (s composeService) hostFile(p string) string {
	best := ""
	for dst := range s.mounts {
		if (p == dst || strings.HasPrefix(p, dst+"/")) && len(dst) > len(best) {
			best = dst
		}
	}
	if best == "" {
		return ""
	}
	return filepath.Join("compose", filepath.FromSlash(s.mounts[best]), filepath.FromSlash(strings.TrimPrefix(p, best)))
}

func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, ystr(x))
		}
		return out
	}
	return nil
}

func loadCompose(t *testing.T) (map[string]any, map[string]composeService) {
	t.Helper()
	docs, err := readYAMLDocs(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", composeFile, len(docs))
	}
	doc := docs[0]
	services := map[string]composeService{}
	for name, v := range ymap(doc["services"]) {
		raw := ymap(v)
		s := composeService{name: name, raw: raw, env: map[string]string{}, mounts: map[string]string{}}
		s.command = append(stringList(raw["entrypoint"]), stringList(raw["command"])...)
		switch env := raw["environment"].(type) {
		case map[string]any:
			for k, v := range env {
				s.env[k] = ystr(v)
			}
		case []any:
			for _, kv := range env {
				k, v, _ := strings.Cut(ystr(kv), "=")
				s.env[k] = v
			}
		}
		for _, m := range ylist(raw["volumes"]) {
			var src, dst, typ string
			if str, ok := m.(string); ok {
				parts := strings.Split(str, ":")
				if len(parts) < 2 {
					continue // anonymous volume
				}
				src, dst = parts[0], parts[1]
				typ = "volume"
				if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
					typ = "bind"
				}
			} else {
				src, dst, typ = ystr(ydig(m, "source")), ystr(ydig(m, "target")), ystr(ydig(m, "type"))
			}
			if typ == "bind" {
				s.mounts[dst] = src
			} else if _, ok := ymap(doc["volumes"])[src]; !ok {
				t.Errorf("service %s mounts the volume %q, which is not declared under volumes:", name, src)
			}
		}
		services[name] = s
	}
	return doc, services
}

// TestComposeFiles checks that everything compose.yaml refers to exists:
// bind-mounted files and directories, secret files, env files, the build
// context and Dockerfile, declared volumes, depends_on targets, and files
// the commands name inside the containers (e.g. the NATS configuration
// reached through a bind mount).
func TestComposeFiles(t *testing.T) {
	doc, services := loadCompose(t)
	for _, s := range services {
		for dst, src := range s.mounts {
			if _, err := os.Stat(filepath.Join("compose", filepath.FromSlash(src))); err != nil {
				t.Errorf("service %s mounts %s at %s: %v", s.name, src, dst, err)
			}
		}
		for _, sec := range ylist(s.raw["secrets"]) {
			name := ystr(sec)
			if m := ymap(sec); m != nil {
				name = ystr(m["source"])
			}
			if _, ok := ymap(doc["secrets"])[name]; !ok {
				t.Errorf("service %s uses the secret %s, which is not declared under secrets:", s.name, name)
			}
		}
		for _, f := range stringList(s.raw["env_file"]) {
			if _, err := os.Stat(filepath.Join("compose", f)); err != nil {
				t.Errorf("service %s: env_file %v", s.name, err)
			}
		}
		if b := ymap(s.raw["build"]); b != nil {
			ctx := filepath.Join("compose", ystr(b["context"]))
			if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
				t.Errorf("service %s: build context %s is not the repository root: %v", s.name, ctx, err)
			}
			if _, err := os.Stat(filepath.Join(ctx, ystr(b["dockerfile"]))); err != nil {
				t.Errorf("service %s: dockerfile %v", s.name, err)
			}
		}
		switch dep := s.raw["depends_on"].(type) {
		case []any:
			for _, d := range dep {
				if _, ok := services[ystr(d)]; !ok {
					t.Errorf("service %s depends on unknown service %s", s.name, ystr(d))
				}
			}
		case map[string]any:
			for d := range dep {
				if _, ok := services[d]; !ok {
					t.Errorf("service %s depends on unknown service %s", s.name, d)
				}
			}
		}
		// Files a command names inside the container must be in the repository.
		for _, arg := range s.command {
			for _, p := range regexp.MustCompile(`/[A-Za-z0-9_./-]+\.(?:conf|ya?ml|json)`).FindAllString(arg, -1) {
				host := s.hostFile(p)
				if host == "" {
					continue
				}
				if _, err := os.Stat(host); err != nil {
					t.Errorf("service %s runs with %s, which is %s in the repository: %v", s.name, p, host, err)
				}
			}
		}
	}
	for name, v := range ymap(doc["secrets"]) {
		if ystr(ydig(v, "file")) == "" {
			t.Errorf("secret %s: want a file (the demo secrets are files in compose/secrets)", name)
		}
	}
	// Every secret file exists: those in compose/secrets, and the TLS
	// files gen-certs.sh makes into compose/certs.
	files, _ := composeSecretFiles(t, doc)
	for name, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("secret %s: %v", name, err)
		}
	}
}

// TestComposeTopology checks the shape the issue asks for: three NATS
// nodes from deployments/nats, two pollers and a notifier on the cluster
// with three replicas, the simulator, and Prometheus scraping every
// rollcall service.
func TestComposeTopology(t *testing.T) {
	_, services := loadCompose(t)
	var nats, pollers, notifiers, sims []string
	for name, s := range services {
		if strings.HasPrefix(ystr(s.raw["image"]), "nats:") {
			nats = append(nats, name)
			if !slices.ContainsFunc(s.command, func(a string) bool { return strings.Contains(a, "/etc/nats/") }) || s.hostFile("/etc/nats") == "" {
				t.Errorf("NATS service %s does not run with a configuration mounted from deployments/nats", name)
			}
			continue
		}
		if slices.Contains(stringList(s.raw["profiles"]), "tools") {
			continue // on-demand tools (replay)
		}
		switch s.rollcallCommand() {
		case "poller":
			pollers = append(pollers, name)
		case "notifier":
			notifiers = append(notifiers, name)
		case "simulator":
			sims = append(sims, name)
		}
	}
	if len(nats) != 3 || len(pollers) != 2 || len(notifiers) != 1 || len(sims) != 1 {
		t.Fatalf("NATS %v, pollers %v, notifiers %v, simulators %v: want 3, 2, 1, 1", nats, pollers, notifiers, sims)
	}
	// Each NATS node has its own server name.
	names := map[string]bool{}
	for _, n := range nats {
		name := services[n].env["NATS_SERVER_NAME"]
		if name == "" || names[name] {
			t.Errorf("NATS service %s: NATS_SERVER_NAME %q missing or not unique", n, name)
		}
		names[name] = true
	}
	for _, name := range append(slices.Clone(pollers), notifiers...) {
		s := services[name]
		if s.env["NATS_REPLICAS"] != "3" {
			t.Errorf("%s: NATS_REPLICAS=%q, want 3 on a three-node cluster", name, s.env["NATS_REPLICAS"])
		}
		urls := strings.Split(s.env["NATS_URL"], ",")
		var hosts []string
		for _, u := range urls {
			h, _ := hostPort(u)
			hosts = append(hosts, h)
			if !slices.Contains(nats, h) {
				t.Errorf("%s: NATS_URL names %s, which is not a NATS service", name, u)
			}
		}
		if len(hosts) != len(nats) {
			t.Errorf("%s: NATS_URL %q should list every node so that it connects with any one down", name, s.env["NATS_URL"])
		}
	}
	// Distinct replica ids.
	if a, b := services[pollers[0]].env["POLLER_ID"], services[pollers[1]].env["POLLER_ID"]; a == b && a != "" {
		t.Errorf("both pollers have POLLER_ID %q", a)
	}
	// The pollers poll the simulator, at the port it listens on.
	sim := services[sims[0]]
	_, simPort := hostPort(sim.env["SIM_ADDR"])
	for _, name := range pollers {
		for _, v := range []string{"VPP_BASE_URL", "VEEAM_BASE_URL"} {
			h, p := hostPort(services[name].env[v])
			if h != sims[0] || p != simPort {
				t.Errorf("%s: %s=%q, want the simulator service %s on port %s", name, v, services[name].env[v], sims[0], simPort)
			}
		}
	}
	if host, _ := hostPort(sim.env["SIM_ADDR"]); host != "0.0.0.0" && host != "" {
		t.Errorf("simulator: SIM_ADDR %q must listen on every interface to be reachable from the pollers", sim.env["SIM_ADDR"])
	}
	checkPrometheusTargets(t, services, append(append(slices.Clone(pollers), notifiers...), "prometheus"))
}

// checkPrometheusTargets checks prometheus.yaml (as mounted in compose):
// its rule files are mounted, and it scrapes each rollcall service on the
// port of its HTTP_ADDR, under the job names alerts.yaml and the
// dashboard use.
func checkPrometheusTargets(t *testing.T, services map[string]composeService, want []string) {
	t.Helper()
	prom, ok := services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	var cfgPath string
	for _, a := range prom.command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgPath = v
		}
	}
	if cfgPath == "" {
		cfgPath = "/etc/prometheus/prometheus.yml"
	}
	host := prom.hostFile(cfgPath)
	if filepath.Clean(host) != filepath.Join("prometheus", "prometheus.yaml") {
		t.Fatalf("prometheus reads %s, which compose mounts from %q; want deployments/prometheus/prometheus.yaml", cfgPath, host)
	}
	docs, err := readYAMLDocs(host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := docs[0]
	for _, rf := range ylist(cfg["rule_files"]) {
		if h := prom.hostFile(ystr(rf)); h == "" {
			t.Errorf("rule file %s is not mounted into the prometheus service", ystr(rf))
		} else if _, err := os.Stat(h); err != nil {
			t.Errorf("rule file %s: %v", ystr(rf), err)
		}
	}
	jobs := map[string]string{}
	scraped := map[string]bool{}
	for _, sc := range ylist(cfg["scrape_configs"]) {
		job := ystr(ydig(sc, "job_name"))
		for _, st := range ylist(ydig(sc, "static_configs")) {
			for _, tg := range ylist(ydig(st, "targets")) {
				h, p := hostPort(ystr(tg))
				if h == "localhost" {
					h = "prometheus"
				}
				s, ok := services[h]
				if !ok {
					t.Errorf("job %s scrapes %s, which is not a compose service", job, ystr(tg))
					continue
				}
				scraped[h] = true
				if cmd := s.rollcallCommand(); cmd != "" {
					jobs[h] = job
					if _, hp := hostPort(s.env["HTTP_ADDR"]); hp != p {
						t.Errorf("job %s scrapes %s, but %s serves /metrics on HTTP_ADDR=%q", job, ystr(tg), h, s.env["HTTP_ADDR"])
					}
					if wantJob := "rollcall-" + cmd; job != wantJob {
						t.Errorf("%s is scraped by job %s; alerts.yaml and the dashboard expect %s", h, job, wantJob)
					}
				}
			}
		}
	}
	for _, w := range want {
		if !scraped[w] {
			t.Errorf("prometheus does not scrape %s", w)
		}
	}
}

// TestComposeEnvironment checks every variable a rollcall container sets
// is one its command reads (or, for the simulator, one the README
// documents), that credentials only come as *_FILE paths to mounted
// compose secrets, and that the demo tokens are the simulator's.
func TestComposeEnvironment(t *testing.T) {
	_, services := loadCompose(t)
	n := 0
	for _, s := range services {
		cmd := s.rollcallCommand()
		if cmd == "" {
			continue
		}
		n++
		known := serviceVars(t, cmd)
		var secrets []string
		for _, sec := range ylist(s.raw["secrets"]) {
			secrets = append(secrets, ystr(sec))
		}
		for k, v := range s.env {
			if !known(k) {
				t.Errorf("%s sets %s, which %s does not read", s.name, k, cmd)
			}
			if isSecretVar(k) {
				t.Errorf("%s sets the credential %s in plain text; use %s_FILE with a compose secret", s.name, k, k)
			}
			if strings.HasSuffix(k, "_FILE") {
				dir, file := path.Split(v)
				if dir != "/run/secrets/" || !slices.Contains(secrets, file) {
					t.Errorf("%s: %s=%s is not one of its secrets (/run/secrets/{%s})", s.name, k, v, strings.Join(secrets, ","))
				}
			}
		}
	}
	if n < 4 {
		t.Fatalf("found %d rollcall services", n)
	}
	// The demo works only if the pollers present the tokens the simulator
	// accepts.
	for file, want := range map[string]string{"compose/secrets/vpp-stoken": simulator.DefaultVPPToken, "compose/secrets/veeam-token": simulator.DefaultVeeamToken} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) != want {
			t.Errorf("%s is not the simulator's demo token", file)
		}
	}
}

// natsConfigText returns a NATS configuration file with the files it
// includes appended, comments and quoted strings removed (subjects such as
// "$JS.API.>" are not variables).
func natsConfigText(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	quoted := regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'`)
	for _, line := range strings.Split(string(b), "\n") {
		line = quoted.ReplaceAllString(line, `""`)
		line, _, _ = strings.Cut(line, "#")
		line, _, _ = strings.Cut(line, "//")
		out.WriteString(line + "\n")
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "include "); ok {
			out.WriteString(natsConfigText(t, filepath.Join(filepath.Dir(name), strings.Trim(strings.TrimSpace(f), `"'`))))
		}
	}
	return out.String()
}

// natsComposeEnv is the environment a compose NATS service runs
// nats-server with: its environment: entries plus what its shell command
// exports (export NAME="$$(cat /run/secrets/x)" reads a secret file;
// $$NAME refers to an earlier export). A value /run/secrets/<name> (a TLS
// file) must be a secret the service mounts; with files (by secret name,
// from composeSecretFiles) it becomes that file's path here.
func natsComposeEnv(t *testing.T, doc map[string]any, s composeService, files map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	secrets := serviceSecrets(s)
	for k, v := range s.env {
		if name, ok := strings.CutPrefix(v, "/run/secrets/"); ok {
			if !slices.Contains(secrets, name) {
				t.Errorf("%s: %s=%s is not one of its secrets %v", s.name, k, v, secrets)
			} else if files != nil {
				v = files[name]
			}
		}
		env[k] = v
	}
	exportRE := regexp.MustCompile(`(?m)^\s*export ([A-Z][A-Z0-9_]*)="([^"]*)"\s*$`)
	catRE := regexp.MustCompile(`\$\$\(cat /run/secrets/([a-z0-9_]+)\)`)
	refRE := regexp.MustCompile(`\$\$\{?([A-Z][A-Z0-9_]*)\}?`)
	for _, a := range s.command {
		for _, m := range exportRE.FindAllStringSubmatch(a, -1) {
			v := catRE.ReplaceAllStringFunc(m[2], func(c string) string {
				name := catRE.FindStringSubmatch(c)[1]
				if !slices.Contains(secrets, name) {
					t.Errorf("%s reads /run/secrets/%s, which is not one of its secrets", s.name, name)
					return ""
				}
				b, err := os.ReadFile(filepath.Join("compose", ystr(ydig(doc, "secrets", name, "file"))))
				if err != nil {
					t.Errorf("%s: secret %s: %v", s.name, name, err)
				}
				return strings.TrimRight(string(b), "\n") // as $(…) does
			})
			v = refRE.ReplaceAllStringFunc(v, func(r string) string {
				name := refRE.FindStringSubmatch(r)[1]
				val, ok := env[name]
				if !ok {
					t.Errorf("%s: export %s uses $%s before it is set", s.name, m[1], name)
				}
				return val
			})
			env[m[1]] = v
		}
	}
	return env
}

// natsServiceConfig returns the host path of the configuration file a
// compose NATS service runs with.
func natsServiceConfig(t *testing.T, s composeService) string {
	t.Helper()
	for _, a := range s.command {
		if m := regexp.MustCompile(`(?:--config|-c)[ =](/\S+)`).FindStringSubmatch(a); m != nil {
			if host := s.hostFile(m[1]); host != "" {
				return host
			}
		}
	}
	t.Fatalf("%s: cannot find the configuration file it runs with", s.name)
	return ""
}

// TestComposeNATSVariables checks that the NATS servers get every
// environment variable deployments/nats/cluster.conf (and the files it
// includes) refers to, e.g. the node name, routes and account passwords.
func TestComposeNATSVariables(t *testing.T) {
	doc, services := loadCompose(t)
	varRE := regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)
	checked := 0
	for _, s := range services {
		if !strings.HasPrefix(ystr(s.raw["image"]), "nats:") {
			continue
		}
		text := natsConfigText(t, natsServiceConfig(t, s))
		env := natsComposeEnv(t, doc, s, nil)
		var missing []string
		for _, m := range varRE.FindAllStringSubmatch(text, -1) {
			name := m[1]
			// Variables the configuration defines itself are not environment.
			if regexp.MustCompile(`(?m)^\s*` + name + `\s*[:=]`).MatchString(text) {
				continue
			}
			if _, ok := env[name]; !ok && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s: its NATS configuration refers to $%s; the service does not set it", s.name, strings.Join(missing, ", $"))
		}
		checked++
	}
	if checked != 3 {
		t.Fatalf("checked %d NATS services, want 3", checked)
	}
}

// TestComposeNATSCredentials starts a NATS server from the configuration
// a compose NATS node runs with, in the environment compose gives it (the
// passwords exported from the demo secret files, its TLS files made by
// gen-certs.sh), and connects as each rollcall service does: over TLS,
// trusting the CA in its NATS_CA_FILE, NATS_USER with the password in its
// NATS_PASSWORD_FILE must be accepted, a wrong password refused. So the
// user names in compose.yaml and accounts.conf agree, and each service
// mounts the secrets its NATS password and CA come from. The routes
// compose gives the nodes reach every node and carry no credentials.
func TestComposeNATSCredentials(t *testing.T) {
	doc, services := loadCompose(t)
	node, ok := services["nats-1"]
	if !ok {
		t.Fatal("no service nats-1")
	}
	files, _ := composeSecretFiles(t, doc)
	for k, v := range natsComposeEnv(t, doc, node, files) {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(natsServiceConfig(t, node))
	if err != nil {
		t.Fatalf("NATS configuration with the compose environment: %v", err)
	}
	// The routes compose builds reach every node, with no credentials in
	// them: the nodes authenticate each other by certificate.
	var routeHosts []string
	for _, u := range opts.Routes {
		routeHosts = append(routeHosts, u.Hostname())
		if u.User != nil {
			t.Errorf("route %s carries credentials", u.Redacted())
		}
	}
	var natsNodes []string
	for name, svc := range services {
		if strings.HasPrefix(ystr(svc.raw["image"]), "nats:") {
			natsNodes = append(natsNodes, name)
		}
	}
	sort.Strings(routeHosts)
	sort.Strings(natsNodes)
	if !slices.Equal(routeHosts, natsNodes) {
		t.Errorf("routes go to %v, want every NATS service %v", routeHosts, natsNodes)
	}
	// One node alone, on free loopback ports. Without routes a clustered
	// JetStream cannot start, and these checks are about authentication:
	// deployments/nats_test.go proves what each user may do.
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.Cluster.Host, opts.Cluster.Port, opts.Routes = "127.0.0.1", -1, nil
	opts.JetStream, opts.StoreDir, opts.NoLog, opts.NoSigs = false, t.TempDir(), true, true
	opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	n := 0
	for _, svc := range services {
		user := svc.env["NATS_USER"]
		if user == "" {
			continue
		}
		n++
		file := svc.env["NATS_PASSWORD_FILE"]
		name := strings.TrimPrefix(file, "/run/secrets/")
		b, err := os.ReadFile(filepath.Join("compose", ystr(ydig(doc, "secrets", name, "file"))))
		if err != nil {
			t.Errorf("%s: NATS_PASSWORD_FILE %s: %v", svc.name, file, err)
			continue
		}
		pw := strings.TrimSpace(string(b))
		// The server speaks TLS only: the service must trust its CA.
		ca := files[strings.TrimPrefix(svc.env["NATS_CA_FILE"], "/run/secrets/")]
		if ca == "" || !slices.Contains(serviceSecrets(svc), strings.TrimPrefix(svc.env["NATS_CA_FILE"], "/run/secrets/")) {
			t.Errorf("%s: NATS_CA_FILE=%q is not a secret it mounts: it cannot verify the NATS servers' certificates", svc.name, svc.env["NATS_CA_FILE"])
			continue
		}
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, pw), nats.RootCAs(ca), nats.NoReconnect(), nats.Timeout(5*time.Second))
		if err != nil {
			t.Errorf("%s: NATS user %s with the password from %s and the CA from %s: %v", svc.name, user, file, svc.env["NATS_CA_FILE"], err)
		} else {
			nc.Close()
		}
		if nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, pw+"x"), nats.RootCAs(ca), nats.NoReconnect(), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Errorf("%s: NATS user %s accepted a wrong password", svc.name, user)
		}
	}
	if n < 4 {
		t.Errorf("%d services connect to NATS with a user, want both pollers, the notifier and replay", n)
	}
}

// TestComposeImages checks that every service compose builds runs a binary
// its image has: the production image (the Dockerfile's default target)
// has no simulator, so the simulator service builds the target
// "simulator". Services that share an image name build the same target,
// since compose tags one image under that name.
func TestComposeImages(t *testing.T) {
	_, services := loadCompose(t)
	stages := dockerStages(t)
	targets := map[string]string{} // image name → target
	built := 0
	for _, name := range sortedKeys(services) {
		s := services[name]
		b := ymap(s.raw["build"])
		if b == nil {
			continue
		}
		built++
		target := ystr(b["target"])
		st := stages[len(stages)-1]
		if target != "" {
			i := slices.IndexFunc(stages, func(st dockerStage) bool { return st.name == target })
			if i < 0 {
				t.Errorf("%s builds the target %s, which the Dockerfile does not have", name, target)
				continue
			}
			st = stages[i]
		}
		if img := ystr(s.raw["image"]); img != "" {
			if prev, ok := targets[img]; ok && prev != st.name {
				t.Errorf("%s tags the target %s as %s, which another service builds from %s", name, st.name, img, prev)
			}
			targets[img] = st.name
		}
		if cmd := s.rollcallCommand(); !slices.Contains(st.binaries, cmd) {
			t.Errorf("%s runs %q, which its image (target %s: %v) does not have", name, s.command, st.name, st.binaries)
		}
	}
	if built < 4 {
		t.Fatalf("compose builds %d services, want the pollers, the notifier, replay and the simulator", built)
	}
}
