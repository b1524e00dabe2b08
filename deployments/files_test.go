package deployments

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/rollcall/rollcall/internal/app/notifierapp"
	"github.com/rollcall/rollcall/internal/app/pollerapp"
	"github.com/rollcall/rollcall/internal/envx"
)

// TestDeploymentFilesParse parses every YAML and JSON file under
// deployments/ (compose, Kubernetes, Prometheus, Grafana, and whatever is
// added later): YAML documents must decode without duplicate keys, JSON
// must be one value without duplicate object keys.
func TestDeploymentFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml":
			n++
			if _, err := readYAMLDocs(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		case ".json":
			n++
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := checkJSON(b); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("found %d YAML/JSON files under deployments/, want the compose, Kubernetes, Prometheus and Grafana files", n)
	}
}

// readYAMLDocs decodes every document of a YAML file (yaml.v3 refuses
// duplicate mapping keys). Empty documents are dropped.
func readYAMLDocs(name string) ([]map[string]any, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// checkJSON parses b as exactly one JSON value and refuses duplicate keys,
// which encoding/json would silently collapse.
func checkJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("%s: duplicate key %q", path, key)
				}
				seen[key] = true
				if err := walk(path + "." + key); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk("$"); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one JSON value")
	}
	return nil
}

// Small accessors for decoded YAML.

func ymap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func ylist(v any) []any {
	l, _ := v.([]any)
	return l
}

func ystr(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// ydig follows keys through nested maps.
func ydig(v any, keys ...string) any {
	for _, k := range keys {
		v = ymap(v)[k]
	}
	return v
}

var (
	varsOnce     sync.Once
	serviceVarsM map[string]map[string]bool
	varsErr      error
)

// webhookOverrideRE matches the notifier's per-URL variables, which
// notifierapp.Load reads for n = 1…32 outside the Config struct tags.
var webhookOverrideRE = regexp.MustCompile(`^WEBHOOK_([1-9]|[12][0-9]|3[0-2])_(SECRET|SECRET_FILE|TYPES)$`)

// serviceVars lists the variables each rollcall command reads: the
// poller's and notifier's from their configuration types (envx.Names, as
// internal/app/docs_test.go does), the simulator's from the README, which
// documents its SIM_* variables. "replay" is the notifier's.
func serviceVars(t *testing.T, service string) func(string) bool {
	t.Helper()
	varsOnce.Do(func() {
		serviceVarsM = map[string]map[string]bool{
			"poller":   set(envx.Names(&pollerapp.Config{})...),
			"notifier": set(envx.Names(&notifierapp.Config{})...),
		}
		readme, err := os.ReadFile("../README.md")
		if err != nil {
			varsErr = err
			return
		}
		sim := map[string]bool{}
		for _, m := range regexp.MustCompile("`(SIM_[A-Z0-9_]+)`").FindAllStringSubmatch(string(readme), -1) {
			sim[m[1]] = true
		}
		serviceVarsM["simulator"] = sim
	})
	if varsErr != nil {
		t.Fatal(varsErr)
	}
	switch service {
	case "poller", "simulator":
		return func(v string) bool { return serviceVarsM[service][v] }
	case "notifier":
		return func(v string) bool { return serviceVarsM["notifier"][v] || webhookOverrideRE.MatchString(v) }
	}
	t.Fatalf("unknown rollcall command %q", service)
	return nil
}

// secretVarRE matches variables that hold a credential; each has a _FILE
// variant that deployments must use instead.
var secretVarRE = regexp.MustCompile(`(^|_)(STOKEN|TOKEN|PASSWORD|SECRET|SLACK_WEBHOOK_URL|WEBHOOK_URL)$`)

// isSecretVar reports whether a variable carries a credential in its value.
func isSecretVar(name string) bool {
	return secretVarRE.MatchString(name) && !strings.HasPrefix(name, "SIM_")
}

// hostPort splits the host and port of an address or URL ("0.0.0.0:9090",
// "http://simulator:8080/mdm", "nats://nats-1:4222").
func hostPort(s string) (host, port string) {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	if i := strings.IndexAny(s, "/?"); i >= 0 {
		s = s[:i]
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		s = s[at+1:]
	}
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}
