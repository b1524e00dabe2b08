package deployments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/simulator"
	"github.com/rollcall/rollcall/internal/testutil"
)

// The tests in this file run the deployment under a real Docker engine:
// the image built with the README's `docker build` command, that image run
// on its own as the Dockerfile's comment shows, and the compose stack
// brought up with `docker compose up`. They skip when no engine, buildx or
// compose answers, unless ROLLCALL_DOCKER=require, which .ci/run sets once
// .ci/docker has provided all three (so that in CI a skip is a failure);
// ROLLCALL_DOCKER=skip always skips them.

// dockerImage is the tag the image is built under (not the README's
// rollcall:latest, so that a developer's own build is left alone), and
// simulatorImage the tag of the simulator's image (target simulator).
const (
	dockerImage    = "rollcall:test"
	simulatorImage = "rollcall-simulator:test"
)

// composeProject is the project the compose test brings up: not the
// file's own name (rollcall), so that its `down -v` never removes the
// volumes of a stack a developer runs.
const composeProject = "rollcall-test"

// pollEvery spaces the polls of the Docker and Kubernetes tests, each of
// which runs a command or fetches /metrics, on a machine with two cores
// that also runs the containers under test.
const pollEvery = 500 * time.Millisecond

func requireDocker(t *testing.T) {
	t.Helper()
	mode := os.Getenv("ROLLCALL_DOCKER")
	switch {
	case mode == "skip":
		t.Skip("SKIPPED: ROLLCALL_DOCKER=skip")
	case testing.Short() && mode != "require":
		t.Skip("SKIPPED in -short mode: the Docker tests build an image and run the compose stack")
	}
	for _, args := range [][]string{{"version", "--format", "{{.Server.Version}}"}, {"buildx", "version"}, {"compose", "version"}} {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			msg := fmt.Sprintf("docker %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
			if mode == "require" {
				t.Fatalf("ROLLCALL_DOCKER=require, but %s", msg)
			}
			t.Skipf("SKIPPED: no Docker engine with buildx and compose here (%s); `bash .ci/docker` provides them", msg)
		}
	}
}

// docker runs the docker command from the repository root, as the README
// does, and returns its standard output.
func docker(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Dir = ".."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, lastLines(stderr.String()+stdout.String(), 40))
	}
	return stdout.String(), nil
}

func mustDocker(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := docker(timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// TestDockerEngine builds the image and runs it, alone and as the compose
// stack, under a real Docker engine.
func TestDockerEngine(t *testing.T) {
	requireDocker(t)
	for _, ref := range standins(t) {
		t.Logf("NOTE: %s is a stand-in built by .ci/docker or .ci/kube (no registry reachable), not the published image", ref)
	}
	if !t.Run("image", testDockerImage) {
		return
	}
	t.Run("container", testDockerContainer)
	t.Run("compose", testDockerCompose)
}

// standins lists the local images .ci/docker built in place of ones it
// could not pull. Each is labelled with its own name; images built from
// one inherit the label with the base's name, and are not listed.
func standins(t *testing.T) []string {
	out := mustDocker(t, time.Minute, "images", "--filter", "label=org.rollcall.standin", "--format", "{{.Repository}}:{{.Tag}}")
	var refs []string
	for _, ref := range strings.Fields(out) {
		label, err := docker(time.Minute, "image", "inspect", "--format", `{{index .Config.Labels "org.rollcall.standin"}}`, ref)
		if err == nil && strings.TrimSpace(label) == ref {
			refs = append(refs, ref)
		}
	}
	return refs
}

// testDockerImage builds the image with the README's command and checks
// what the Dockerfile promises: small, non-root, no shell, every binary
// runs.
func testDockerImage(t *testing.T) {
	start := time.Now()
	mustDocker(t, 20*time.Minute, "build", "-f", "deployments/docker/Dockerfile",
		"--build-arg", "VERSION=v0.0.0-imagetest", "--build-arg", "REVISION=0123abc", "-t", dockerImage, ".")
	t.Logf("docker build took %s", time.Since(start).Round(time.Second))

	var img []struct {
		Size   int64
		Config struct {
			User       string
			Cmd        []string
			Entrypoint []string
		}
	}
	if err := json.Unmarshal([]byte(mustDocker(t, time.Minute, "image", "inspect", dockerImage)), &img); err != nil || len(img) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	c := img[0].Config
	if c.User != "65532:65532" {
		t.Errorf("the image runs as %q, want 65532:65532 (numeric, for runAsNonRoot)", c.User)
	}
	if !slices.Equal(c.Cmd, []string{"poller"}) || len(c.Entrypoint) != 0 {
		t.Errorf("entrypoint %q, cmd %q; want none and [poller]", c.Entrypoint, c.Cmd)
	}
	const maxSize = 100 << 20
	t.Logf("image size %.1f MB", float64(img[0].Size)/(1<<20))
	if img[0].Size > maxSize {
		t.Errorf("image is %d MB, want at most %d MB", img[0].Size>>20, maxSize>>20)
	}
	if out, err := dockerRunAllWith([]string{"--entrypoint", "/bin/sh"}, "-c", "true"); err == nil || !strings.Contains(out, "no such file or directory") {
		t.Errorf("the image has a shell, or running one failed otherwise: %v %s", err, out)
	}
	for bin, want := range map[string]string{"notifier": "notifier replay", "poller": "usage: poller"} {
		out, err := dockerRunAll(bin, "--help")
		if !strings.Contains(out, want) {
			t.Errorf("`%s --help` in the image: want %q in its output, got %q (%v)", bin, want, out, err)
		}
		// The build arguments reach --version through -ldflags.
		out, err = dockerRunAll(bin, "--version")
		if want := bin + " v0.0.0-imagetest (revision 0123abc, go"; err != nil || !strings.HasPrefix(out, want) {
			t.Errorf("`%s --version` in the image: %q (%v), want it to begin %q", bin, out, err, want)
		}
	}
	// The simulator does not ship in the production image…
	if out, err := dockerRunAll("simulator", "--help"); err == nil || strings.Contains(out, "Usage") {
		t.Errorf("the production image runs the simulator: %v %s", err, out)
	}
	// … but in its own, built as the Dockerfile's comment shows.
	mustDocker(t, 20*time.Minute, "build", "-f", "deployments/docker/Dockerfile", "--target", "simulator", "-t", simulatorImage, ".")
	var sim []struct{ Config struct{ User string } }
	if err := json.Unmarshal([]byte(mustDocker(t, time.Minute, "image", "inspect", simulatorImage)), &sim); err != nil || len(sim) != 1 {
		t.Fatalf("image inspect %s: %v", simulatorImage, err)
	}
	if sim[0].Config.User != "65532:65532" {
		t.Errorf("the simulator image runs as %q, want 65532:65532", sim[0].Config.User)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--read-only", "--cap-drop", "ALL", simulatorImage, "simulator", "--help").CombinedOutput()
	if !strings.Contains(string(out), "simulator") {
		t.Errorf("`simulator --help` in %s: %q (%v)", simulatorImage, out, err)
	}
	if out, err := exec.CommandContext(ctx, "docker", "run", "--rm", simulatorImage, "poller", "--help").CombinedOutput(); err == nil {
		t.Errorf("the simulator image has the poller: %s", out)
	}
}

// dockerRunAll runs a binary of the image, read-only and without
// capabilities, and returns its stdout and stderr together.
func dockerRunAll(bin string, args ...string) (string, error) {
	return dockerRunAllWith(nil, append([]string{bin}, args...)...)
}

// dockerRunAllWith is dockerRunAll with docker run options before the
// image.
func dockerRunAllWith(opts []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := append(append([]string{"run", "--rm", "--read-only", "--cap-drop", "ALL"}, opts...), dockerImage)
	out, err := exec.CommandContext(ctx, "docker", append(all, args...)...).CombinedOutput()
	return string(out), err
}

// testDockerContainer runs the image on its own as the Dockerfile's comment
// shows: the poller with its embedded NATS server storing into a named
// volume at /data, here against the simulator in a second container. It
// proves the non-root user can write the volume and that the state
// survives a restart of the container.
func testDockerContainer(t *testing.T) {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	network, volume := "rollcall-test-"+suffix, "rollcall-test-data-"+suffix
	sim, poller := "rollcall-test-sim-"+suffix, "rollcall-test-poller-"+suffix
	mustDocker(t, time.Minute, "network", "create", network)
	mustDocker(t, time.Minute, "volume", "create", volume)
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{sim, poller} {
				out, _ := exec.Command("docker", "logs", c).CombinedOutput()
				t.Logf("%s log:\n%s", c, lastLines(string(out), 60))
			}
		}
		_, _ = docker(time.Minute, "rm", "-f", "-v", sim, poller)
		_, _ = docker(time.Minute, "volume", "rm", "-f", volume)
		_, _ = docker(time.Minute, "network", "rm", network)
	})
	mustDocker(t, time.Minute, "run", "-d", "--name", sim, "--network", network, "--network-alias", "simulator",
		"--read-only", "--cap-drop", "ALL", "-e", "SIM_ADDR=0.0.0.0:8080", "-e", "SIM_USERS=30", simulatorImage, "simulator", "serve")
	mustDocker(t, time.Minute, "run", "-d", "--name", poller, "--network", network, "--read-only", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges:true", "-v", volume+":/data", "-p", "127.0.0.1::9090",
		"-e", "VPP_BASE_URL=http://simulator:8080/mdm", "-e", "ALLOW_INSECURE_HTTP=true",
		"-e", "VPP_STOKEN="+simulator.DefaultVPPToken, "-e", "VPP_INTERVAL=2s",
		dockerImage) // the image's default command: poller
	addr := func() string {
		out := mustDocker(t, time.Minute, "port", poller, "9090/tcp")
		return strings.TrimSpace(strings.Split(out, "\n")[0])
	}
	users := func(addr string) float64 {
		var n float64
		testutil.CheckEvery(t, 60*time.Second, pollEvery, "the poller in its container ready, with a successful run", func() error {
			if _, err := httpGet("http://"+addr+"/readyz", http.StatusOK); err != nil {
				return err
			}
			m, err := testutil.Metrics(addr)
			if err != nil {
				return err
			}
			if m[runsSeries("vpp", "success")] < 1 {
				return fmt.Errorf("no successful run yet")
			}
			n = m[`rollcall_source_users{source="vpp"}`]
			return nil
		})
		return n
	}
	first := users(addr())
	if first < 30 {
		t.Fatalf("the poller tracks %v users, want the simulator's 30 or more", first)
	}
	checkUID(t, poller, 65532)

	// The state is on the volume: after a restart the poller loads the
	// users it stored instead of seeding again.
	mustDocker(t, time.Minute, "restart", "--time", "20", poller)
	users(addr())
	logs, err := exec.Command("docker", "logs", poller).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for line := range strings.SplitSeq(string(logs), "\n") {
		var l struct {
			Msg   string
			Users int
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "loaded the source's users from the KV" {
			loaded = l.Users // the last such line: after the restart
		}
	}
	if loaded < 30 {
		t.Errorf("after a restart the poller loaded %d users from the volume, want 30 or more:\n%s", loaded, lastLines(string(logs), 30))
	}
}

// checkUID reads the user of the container's main process from /proc.
func checkUID(t *testing.T, container string, uid int) {
	t.Helper()
	pid := strings.TrimSpace(mustDocker(t, time.Minute, "inspect", "-f", "{{.State.Pid}}", container))
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Logf("NOTE: cannot read the process of %s (%v); its user is not checked", container, err)
		return
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)`).FindStringSubmatch(string(b))
	if m == nil || m[1] != strconv.Itoa(uid) || m[2] != strconv.Itoa(uid) {
		t.Errorf("%s runs as %v, want uid %d", container, m, uid)
	}
}

// testDockerCompose brings the compose stack up with `docker compose up`
// and checks what a newcomer following the README relies on.
func testDockerCompose(t *testing.T) {
	doc, services := loadCompose(t)
	// The NATS cluster's certificates, made as the README says (into
	// deployments/compose/certs, not in git; kept if still good).
	gen := exec.Command("sh", "deployments/nats/gen-certs.sh")
	gen.Dir = ".."
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("sh deployments/nats/gen-certs.sh: %v\n%s", err, out)
	}
	_, secretValues := composeSecrets(t, doc, filepath.Join("compose", composeCertsDir), "")
	compose := []string{"compose", "-f", "deployments/compose/compose.yaml", "-p", composeProject}

	// Grafana has no stand-in: without its image it is left out.
	var run []string
	for _, name := range sortedKeys(services) {
		s := services[name]
		if slices.Contains(stringList(s.raw["profiles"]), "tools") {
			continue
		}
		if img := ystr(s.raw["image"]); s.raw["build"] == nil && img != "" {
			if _, err := docker(time.Minute, "image", "inspect", img); err != nil {
				if _, err := docker(3*time.Minute, "pull", "-q", img); err != nil {
					if name != "grafana" {
						t.Fatalf("%s: image %s is neither here nor pullable; `bash .ci/docker` builds a stand-in", name, img)
					}
					t.Logf("NOTE: %s left out: image %s is neither here nor pullable (no stand-in for it)", name, img)
					continue
				}
			}
		}
		run = append(run, name)
	}
	// What an interrupted earlier run left (a timeout skips cleanups).
	_, _ = docker(2*time.Minute, append(compose, "down", "-v", "--remove-orphans", "--timeout", "10")...)
	// Every published port must be free: compose publishes fixed ones.
	published := map[string]map[string]string{} // service → container port → host address
	for _, name := range run {
		published[name] = map[string]string{}
		for _, p := range stringList(services[name].raw["ports"]) {
			i := strings.LastIndex(p, ":")
			host, cport := p[:i], p[i+1:]
			published[name][cport] = host
			ln, err := net.Listen("tcp", host)
			if err != nil {
				t.Fatalf("%s publishes %s, which is in use here (%v): stop what listens there, or set ROLLCALL_DOCKER=skip", name, host, err)
			}
			ln.Close()
		}
	}
	httpAddr := func(name string) string {
		_, port := hostPort(services[name].env["HTTP_ADDR"])
		a := published[name][port]
		if a == "" {
			t.Fatalf("%s does not publish its HTTP port %s", name, port)
		}
		return a
	}

	t.Cleanup(func() {
		if t.Failed() {
			out, _ := docker(time.Minute, append(compose, "logs", "--no-color", "--timestamps")...)
			t.Logf("compose logs:\n%s", lastLines(out, 200))
		}
		if _, err := docker(3*time.Minute, append(compose, "down", "-v", "--remove-orphans", "--timeout", "20")...); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	start := time.Now()
	mustDocker(t, 20*time.Minute, append(append(compose, "up", "-d", "--build", "--wait", "--wait-timeout", "300"), run...)...)
	t.Logf("docker compose up %v: every container running, NATS healthy, after %s", run, time.Since(start).Round(time.Second))

	// The containers run as compose.yaml says.
	containers := map[string]string{}
	for _, name := range run {
		id := strings.TrimSpace(mustDocker(t, time.Minute, append(compose, "ps", "-q", name)...))
		if id == "" {
			t.Fatalf("%s has no container", name)
		}
		containers[name] = id
		if services[name].raw["build"] == nil {
			continue
		}
		var info []struct {
			Config     struct{ User string }
			HostConfig struct {
				ReadonlyRootfs bool
				CapDrop        []string
				SecurityOpt    []string
			}
		}
		if err := json.Unmarshal([]byte(mustDocker(t, time.Minute, "inspect", id)), &info); err != nil || len(info) != 1 {
			t.Fatalf("inspect %s: %v", name, err)
		}
		h := info[0].HostConfig
		if info[0].Config.User != "65532:65532" || !h.ReadonlyRootfs || !slices.Contains(h.CapDrop, "ALL") || !slices.Contains(h.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: user %q, read-only %v, cap drop %v, security %v", name, info[0].Config.User, h.ReadonlyRootfs, h.CapDrop, h.SecurityOpt)
		}
		checkUID(t, id, 65532)
	}

	// Every rollcall service healthy and ready on its published port.
	var pollers []string
	for _, name := range run {
		switch services[name].rollcallCommand() {
		case "poller":
			pollers = append(pollers, name)
			fallthrough
		case "notifier":
			addr := httpAddr(name)
			testutil.CheckEvery(t, 60*time.Second, pollEvery, name+" ready on "+addr, func() error { return healthyAndReady(addr) })
		}
	}
	sources := pollerSources(t, services[pollers[0]].env)

	// Exactly one replica polls each source.
	holders := dockerLeases(t, pollers, httpAddr, sources, true)
	t.Logf("lease holders %v after %s", holders, time.Since(start).Round(time.Second))

	// A user added in the simulator reaches the notifier's console.
	sim := &composeSim{base: "http://" + published["simulator"]["8080"]}
	sim.addVPPUser(t, 990001)
	notifierLog := func() (string, error) {
		return docker(time.Minute, append(compose, "logs", "--no-color", "--no-log-prefix", "notifier")...)
	}
	waitDockerEvent(t, notifierLog, "vpp", "990001")
	t.Logf("event for the new user at the notifier after %s", time.Since(start).Round(time.Second))

	// Prometheus scrapes every target and loads the rules; Grafana, when
	// it runs, serves the dashboard.
	checkDockerPrometheus(t, "http://"+published["prometheus"]["9090"])
	if slices.Contains(run, "grafana") {
		base := "http://" + published["grafana"]["3000"]
		testutil.CheckEvery(t, 90*time.Second, pollEvery, "grafana: the rollcall dashboard provisioned", func() error {
			b, err := httpGet(base+"/api/search?query=rollcall", http.StatusOK)
			if err != nil {
				return err
			}
			if !bytes.Contains(b, []byte(`"type":"dash-db"`)) {
				return fmt.Errorf("%s", b)
			}
			return nil
		})
	}

	// The audit trail, with the read-only account, as the README shows.
	rstart := time.Now()
	out, err := docker(2*time.Minute, append(compose, "run", "--rm", "replay", "--source", "vpp", "--user", "990001")...)
	if err != nil || !strings.Contains(out, `"subject":"990001"`) {
		t.Errorf("replay of user 990001: %v\n%s", err, out)
	}
	t.Logf("docker compose run --rm replay took %s", time.Since(rstart).Round(time.Millisecond))

	// Stop the replica polling VPP: the other takes over and events flow.
	var stopped, survivor string
	for _, p := range pollers {
		if p == holders["vpp"] {
			stopped = p
		} else {
			survivor = p
		}
	}
	stopAt := time.Now()
	mustDocker(t, 2*time.Minute, append(compose, "stop", "--timeout", "20", stopped)...)
	sim.addVPPUser(t, 990002)
	after := dockerLeases(t, []string{survivor}, httpAddr, sources, false)
	t.Logf("%s took over %v %s after %s was stopped", survivor, after, time.Since(stopAt).Round(time.Second), stopped)
	waitDockerEvent(t, notifierLog, "vpp", "990002")

	// No permission violation on NATS, no secret in any log. The simulator
	// is left out of the secret check: it is the fake API that issued the
	// demo tokens, and prints them on purpose for a newcomer to copy.
	var others []string
	for _, name := range run {
		if services[name].rollcallCommand() != "simulator" {
			others = append(others, name)
		}
	}
	all := mustDocker(t, time.Minute, append(append(compose, "logs", "--no-color"), others...)...)
	for line := range strings.SplitSeq(all, "\n") {
		if strings.Contains(line, "Violation") {
			t.Errorf("NATS logged: %s", line)
		}
	}
	for secret, value := range secretValues {
		if strings.Contains(all, value) || strings.Contains(out, value) {
			t.Errorf("the compose logs or the replay output contain the secret %s", secret)
		}
	}
	t.Logf("compose stack checked in %s", time.Since(start).Round(time.Second))
}

// dockerLeases waits until each source is polled by exactly one of the
// pollers (a successful run and healthy), and, when fresh, the others have
// never run it; it returns the holder of each source.
func dockerLeases(t *testing.T, pollers []string, httpAddr func(string) string, sources []string, fresh bool) map[string]string {
	t.Helper()
	var holders map[string]string
	testutil.CheckEvery(t, 90*time.Second, pollEvery, fmt.Sprintf("one of %v polling each of %v", pollers, sources), func() error {
		metrics := map[string]map[string]float64{} // each poller's, fetched once per poll
		for _, p := range pollers {
			m, err := testutil.Metrics(httpAddr(p))
			if err != nil {
				return err
			}
			metrics[p] = m
		}
		cur := map[string]string{}
		for _, src := range sources {
			for _, p := range pollers {
				ran, succeeded, healthy := sourceState(metrics[p], src)
				switch {
				case healthy == 1 && succeeded >= 1:
					if cur[src] != "" {
						return fmt.Errorf("%s and %s both poll %s", cur[src], p, src)
					}
					cur[src] = p
				case fresh && ran != 0:
					return fmt.Errorf("%s ran %s %v times without holding it", p, src, ran)
				}
			}
			if cur[src] == "" {
				return fmt.Errorf("no poller polls %s yet", src)
			}
		}
		holders = cur
		return nil
	})
	return holders
}

// waitDockerEvent waits for an event about the user among the notifier's
// console lines (one CloudEvent JSON per line).
func waitDockerEvent(t *testing.T, logs func() (string, error), source, id string) {
	t.Helper()
	testutil.CheckEvery(t, 60*time.Second, pollEvery, "the notifier printing an event for "+source+" user "+id, func() error {
		out, err := logs()
		if err != nil {
			return err
		}
		return consoleHasEvent(out, source, id)
	})
}

// checkDockerPrometheus waits until Prometheus (at its real 15 s scrape
// interval) has every target of prometheus.yaml up, samples of rollcall's
// metrics, and every alerting rule of alerts.yaml loaded and healthy.
func checkDockerPrometheus(t *testing.T, base string) {
	t.Helper()
	docs, err := readYAMLDocs("prometheus/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // target → job
	for _, sc := range ylist(docs[0]["scrape_configs"]) {
		for _, st := range ylist(ydig(sc, "static_configs")) {
			for _, tg := range ylist(ydig(st, "targets")) {
				want[ystr(tg)] = ystr(ydig(sc, "job_name"))
			}
		}
	}
	alerts := alertNames(t, "prometheus/alerts.yaml")
	testutil.CheckEvery(t, 90*time.Second, pollEvery, "prometheus: every target up", func() error {
		b, err := httpGet(base+"/api/v1/targets", http.StatusOK)
		if err != nil {
			return err
		}
		var res struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string
					Health    string
					LastError string
				}
			}
		}
		if err := json.Unmarshal(b, &res); err != nil {
			return err
		}
		got := map[string]string{}
		for _, tg := range res.Data.ActiveTargets {
			if tg.Health != "up" {
				return fmt.Errorf("%s is %s: %s", tg.Labels["instance"], tg.Health, tg.LastError)
			}
			got[tg.Labels["instance"]] = tg.Labels["job"]
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("targets %v, want %v", got, want)
		}
		return nil
	})
	testutil.CheckEvery(t, 60*time.Second, pollEvery, "prometheus: rollcall samples and every rule loaded", func() error {
		for _, q := range []string{`rollcall_source_runs_total{outcome="success"}`, `rollcall_sink_deliveries_total`} {
			res, err := promQuery(base, q)
			if err != nil {
				return err
			}
			if len(res) == 0 {
				return fmt.Errorf("no samples of %s", q)
			}
		}
		return promRulesLoaded(base, alerts)
	})
}
