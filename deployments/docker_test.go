package deployments

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	line  int
	cmd   string // upper case: FROM, COPY, USER, …
	args  string
	stage int // index of the FROM it belongs to
}

// parseDockerfile reads instructions the way the builder does for what the
// tests need: comments and blank lines dropped, "\" continuations joined.
func parseDockerfile(t *testing.T, name string) []dockerInstr {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur strings.Builder
	start, stage := 0, -1
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		} else if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{line: start, cmd: cmd, args: strings.TrimSpace(args), stage: stage})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerFlags splits leading --flag=value words off args.
func dockerFlags(args string) (map[string]string, []string) {
	flags := map[string]string{}
	words := strings.Fields(args)
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(words[0], "--"), "=")
		flags[k] = v
		words = words[1:]
	}
	return flags, words
}

// dockerIgnore is a parsed .dockerignore: the last matching pattern wins,
// "!" re-includes.
type dockerIgnore []struct {
	pattern string
	include bool
}

func readDockerIgnore(t *testing.T, name string) dockerIgnore {
	t.Helper()
	b, err := os.ReadFile(name)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var d dockerIgnore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		inc := strings.HasPrefix(line, "!")
		p := path.Clean(strings.Trim(strings.TrimPrefix(line, "!"), "/"))
		d = append(d, struct {
			pattern string
			include bool
		}{p, inc})
	}
	return d
}

// excluded reports whether a context path (slash-separated, relative) is
// left out of the build context. A pattern matching a parent directory
// matches everything below it; "**/" matches any number of directories.
func (d dockerIgnore) excluded(p string) bool {
	ex := false
	for _, r := range d {
		if ignoreMatch(r.pattern, p) {
			ex = !r.include
		}
	}
	return ex
}

func ignoreMatch(pattern, p string) bool {
	for q := p; q != "." && q != "/"; q = path.Dir(q) {
		if globMatch(pattern, q) {
			return true
		}
	}
	return false
}

func globMatch(pattern, p string) bool {
	if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
		parts := strings.Split(p, "/")
		for i := range parts {
			if globMatch(rest, strings.Join(parts[i:], "/")) {
				return true
			}
		}
		return false
	}
	ok, _ := path.Match(pattern, p)
	return ok
}

// TestDockerfile checks the image's shape without a Docker engine: several
// stages, a Go build stage compiling static binaries, a final stage that is
// not the build image and runs as a non-root user, COPY sources that exist
// and are in the build context, and COPY --from naming an earlier stage.
func TestDockerfile(t *testing.T) {
	instrs := parseDockerfile(t, "docker/Dockerfile")
	ignore := readDockerIgnore(t, "docker/Dockerfile.dockerignore")
	var stages []string // stage names (or images) by index
	var froms []string
	for _, in := range instrs {
		if in.cmd != "FROM" {
			continue
		}
		_, words := dockerFlags(in.args)
		if len(words) == 0 {
			t.Fatalf("line %d: FROM without an image", in.line)
		}
		froms = append(froms, words[0])
		name := words[0]
		if len(words) == 3 && strings.EqualFold(words[1], "AS") {
			name = words[2]
		}
		stages = append(stages, name)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d FROM", len(stages))
	}
	final := len(stages) - 1
	if img := froms[final]; strings.Contains(img, "golang") {
		t.Errorf("final stage is the build image %s", img)
	} else if !strings.Contains(img, "distroless/static") && img != "scratch" {
		t.Errorf("final stage %s: want a minimal static base (distroless/static or scratch)", img)
	}

	var finalUser string
	var cgoOff, builds bool
	for _, in := range instrs {
		switch in.cmd {
		case "USER":
			if in.stage == final {
				finalUser = in.args
			}
		case "ENV", "ARG", "RUN":
			if strings.Contains(in.args, "CGO_ENABLED=0") && in.stage < final {
				cgoOff = true
			}
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				builds = true
				if !strings.Contains(in.args, "./cmd/...") {
					t.Errorf("line %d: the build does not compile ./cmd/...: %s", in.line, in.args)
				}
				if in.stage == final {
					t.Errorf("line %d: go build in the final stage", in.line)
				}
			}
		case "COPY", "ADD":
			flags, words := dockerFlags(in.args)
			if len(words) < 2 {
				t.Errorf("line %d: %s needs a source and a destination", in.line, in.cmd)
				continue
			}
			if from, ok := flags["from"]; ok {
				i := slices.Index(stages, from)
				if i < 0 || i >= in.stage {
					t.Errorf("line %d: COPY --from=%s names no earlier stage (stages %v)", in.line, from, stages[:in.stage])
				}
				continue
			}
			for _, src := range words[:len(words)-1] {
				if strings.Contains(src, "$") {
					t.Errorf("line %d: cannot check COPY source %s", in.line, src)
					continue
				}
				rel := path.Clean(strings.TrimPrefix(src, "./"))
				matches, _ := filepath.Glob(filepath.Join("..", filepath.FromSlash(rel)))
				if len(matches) == 0 {
					t.Errorf("line %d: COPY source %s does not exist in the repository", in.line, src)
				}
				if ignore.excluded(rel) {
					t.Errorf("line %d: COPY source %s is excluded by Dockerfile.dockerignore", in.line, src)
				}
			}
		}
	}
	if !builds {
		t.Error("no RUN go build")
	}
	if !cgoOff {
		t.Error("the build stage does not set CGO_ENABLED=0 (static binaries)")
	}
	user, _, _ := strings.Cut(finalUser, ":")
	switch user {
	case "":
		t.Error("final stage has no USER: the image would run as root")
	case "0", "root":
		t.Errorf("final stage runs as %s", finalUser)
	default:
		if strings.Trim(user, "0123456789") != "" {
			t.Errorf("USER %s: use a numeric UID so that Kubernetes runAsNonRoot can verify it", finalUser)
		}
	}
}

// TestDockerContextHasEverySource checks that the directories the
// Dockerfile copies hold every package (and embedded file) the binaries
// are built from, and that the dockerignore keeps none of them out.
func TestDockerContextHasEverySource(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	var copied []string
	for _, in := range parseDockerfile(t, "docker/Dockerfile") {
		flags, words := dockerFlags(in.args)
		if in.cmd != "COPY" || flags["from"] != "" || len(words) < 2 {
			continue
		}
		for _, src := range words[:len(words)-1] {
			copied = append(copied, path.Clean(strings.TrimPrefix(src, "./")))
		}
	}
	ignore := readDockerIgnore(t, "docker/Dockerfile.dockerignore")
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}
{{end}}{{end}}{{end}}`, "./cmd/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, file)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		n++
		in := slices.ContainsFunc(copied, func(c string) bool { return rel == c || strings.HasPrefix(rel, c+"/") })
		if !in {
			t.Errorf("%s is needed by the build but not copied into the build stage", rel)
		}
		if ignore.excluded(rel) {
			t.Errorf("%s is needed by the build but excluded by Dockerfile.dockerignore", rel)
		}
	}
	if n == 0 {
		t.Fatal("go list found no source files")
	}
}

// TestStaticBinaries builds ./cmd/... as the Dockerfile does
// (CGO_ENABLED=0, -trimpath) and checks every binary is statically linked:
// no program interpreter, no dynamic section, no needed libraries. So the
// binaries run on distroless/static, which has no libc.
func TestStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; ELF checks need linux binaries")
	}
	out := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out+string(os.PathSeparator), "./cmd/...")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	want := []string{"bench", "notifier", "poller", "simulator"}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("binaries %v, want %v", got, want)
	}
	for _, name := range got {
		t.Run(name, func(t *testing.T) {
			f, err := elf.Open(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("has %s: dynamically linked", p.Type)
				}
			}
			if f.Section(".interp") != nil || f.Section(".dynamic") != nil {
				t.Error("has an .interp or .dynamic section")
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("needs shared libraries %v", libs)
			}
		})
	}
}

// dockerStage is one stage of the Dockerfile with the rollcall binaries it
// copies from the build stage's output directory.
type dockerStage struct {
	name, image, user string
	binaries          []string // sorted
}

// dockerStages reads the stages of the Dockerfile, the last one (the
// default target) last, with the binaries each copies out of the go build
// output directory (a COPY of the whole directory copies every ./cmd
// binary).
func dockerStages(t *testing.T) []dockerStage {
	t.Helper()
	instrs := parseDockerfile(t, "docker/Dockerfile")
	entries, err := os.ReadDir("../cmd")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, e := range entries {
		if e.IsDir() {
			all = append(all, e.Name())
		}
	}
	var out, buildStage string
	for _, in := range instrs {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			f := strings.Fields(in.args)
			if i := slices.Index(f, "-o"); i >= 0 && i+1 < len(f) {
				out = path.Clean(f[i+1])
			}
		}
	}
	if out == "" {
		t.Fatal("cannot find the go build output directory (-o) in the Dockerfile")
	}
	var stages []dockerStage
	for _, in := range instrs {
		switch in.cmd {
		case "FROM":
			_, words := dockerFlags(in.args)
			st := dockerStage{image: words[0], name: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
		case "USER":
			stages[in.stage].user = in.args
		case "RUN":
			if strings.Contains(in.args, "go build") {
				buildStage = stages[in.stage].name
			}
		case "COPY":
			flags, words := dockerFlags(in.args)
			if flags["from"] == "" || flags["from"] != buildStage || len(words) < 2 {
				continue
			}
			st := &stages[in.stage]
			for _, src := range words[:len(words)-1] {
				switch src = path.Clean(src); {
				case src == out:
					st.binaries = append(st.binaries, all...)
				case path.Dir(src) == out && slices.Contains(all, path.Base(src)):
					st.binaries = append(st.binaries, path.Base(src))
				}
			}
			slices.Sort(st.binaries)
			st.binaries = slices.Compact(st.binaries)
		}
	}
	return stages
}

// TestDockerImageBinaries checks which binaries each image gets: the
// production image (the last stage, the default target) the poller and
// the notifier only, never the simulator; the simulator its own target
// "simulator", with nothing else, non-root on a minimal base like the
// production image.
func TestDockerImageBinaries(t *testing.T) {
	stages := dockerStages(t)
	final := stages[len(stages)-1]
	if want := []string{"notifier", "poller"}; !slices.Equal(final.binaries, want) {
		t.Errorf("the production image (last stage %s) has %v, want %v: the simulator must not ship in it", final.name, final.binaries, want)
	}
	i := slices.IndexFunc(stages, func(s dockerStage) bool { return s.name == "simulator" })
	if i < 0 {
		t.Fatal("no stage named simulator: the simulator needs an image of its own (docker build --target simulator)")
	}
	sim := stages[i]
	if !slices.Equal(sim.binaries, []string{"simulator"}) {
		t.Errorf("the simulator image has %v, want [simulator]", sim.binaries)
	}
	if !strings.Contains(sim.image, "distroless/static") && sim.image != "scratch" {
		t.Errorf("the simulator image is based on %s, want a minimal static base", sim.image)
	}
	if u, _, _ := strings.Cut(sim.user, ":"); u == "" || u == "0" || strings.Trim(u, "0123456789") != "" {
		t.Errorf("the simulator image runs as %q, want a numeric non-root user", sim.user)
	}
}
