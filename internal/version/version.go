// Package version says which build of rollcall is running: --version on
// each binary, the first log line of each service and the
// rollcall_build_info metric.
package version

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version and Revision are set at link time by release builds (the
// container image):
//
//	-ldflags "-X github.com/rollcall/rollcall/internal/version.Version=v1.2.3
//	          -X github.com/rollcall/rollcall/internal/version.Revision=<commit>"
//
// When they are empty, the module version and the VCS revision Go records
// in the binary are used (go install, go build in a checkout).
var (
	Version  string
	Revision string
)

// Build is what a binary knows of its build.
type Build struct {
	Version   string // a release tag, or "devel"
	Revision  string // the commit, with "-dirty" for a modified tree; "unknown" when not recorded
	GoVersion string
}

// Get returns this binary's build.
func Get() Build {
	b := Build{Version: Version, Revision: Revision, GoVersion: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if ok {
		b.GoVersion = info.GoVersion
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		if b.Revision == "" {
			b.Revision = vcsRevision(info.Settings)
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

func vcsRevision(settings []debug.BuildSetting) string {
	rev, dirty := "", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// String is the line --version prints: "poller devel (revision abc…,
// go1.26.8)".
func (b Build) String(program string) string {
	return fmt.Sprintf("%s %s (revision %s, %s)", program, b.Version, b.Revision, b.GoVersion)
}

// LogAttrs are the build's attributes for a service's first log line.
func (b Build) LogAttrs() []any {
	return []any{"version", b.Version, "revision", b.Revision, "go", b.GoVersion}
}

// Register adds rollcall_build_info{version,revision,goversion} 1 to reg,
// as Prometheus's own build_info metrics do.
func Register(reg prometheus.Registerer, b Build) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rollcall_build_info",
		Help: "A metric with a constant '1' value labelled by the version, revision and Go version rollcall was built from.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
	reg.MustRegister(g)
}
