package deployments

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/rollcall/rollcall/internal/metrics"
	"github.com/rollcall/rollcall/internal/ops"
)

// metricInfo is what a dashboard or rule may rely on about a metric.
type metricInfo struct {
	labels map[string]bool
	kind   string // counter, gauge, histogram, summary, untyped
	source string // where it comes from, for messages
}

// targetLabels are attached by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// externalMetrics are used by the rules but exported by something else.
var externalMetrics = map[string]metricInfo{
	"up": {labels: set("job", "instance"), kind: "gauge", source: "Prometheus"},
	"kube_deployment_status_replicas_unavailable": {labels: set("namespace", "deployment"), kind: "gauge", source: "kube-state-metrics"},
}

// labelValues are the values a label takes where the code fixes them; an
// equality matcher on such a label must use one of them.
var labelValues = map[string]map[string][]string{
	"rollcall_source_runs_total":     {"outcome": {"success", "failure", "stopped"}},
	"rollcall_sink_deliveries_total": {"outcome": {metrics.Delivered, metrics.Retried, metrics.DeadLettered}},
}

func set(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

// recordingRegisterer registers with a real registry and remembers every
// collector, so that the test sees each metric NewPoller and NewNotifier
// create, whether or not it is on an exported field.
type recordingRegisterer struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

// knownMetrics lists every metric the services expose: the rollcall_
// metrics of metrics.NewPoller and metrics.NewNotifier (names and labels
// from their descriptors) and the Go and process collectors of
// ops.NewRegistry (from a gather).
func knownMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	out := map[string]metricInfo{}
	reg := ops.NewRegistry()
	rec := &recordingRegisterer{Registry: reg}
	metrics.NewPoller(rec)
	metrics.NewNotifier(rec)
	for _, c := range rec.collectors {
		kind := "untyped"
		switch c.(type) {
		case *prometheus.CounterVec, prometheus.Counter:
			kind = "counter"
		case *prometheus.GaugeVec, prometheus.Gauge:
			kind = "gauge"
		case *prometheus.HistogramVec, prometheus.Histogram:
			kind = "histogram"
		case *prometheus.SummaryVec, prometheus.Summary:
			kind = "summary"
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read descriptor %s", d)
			}
			labels := map[string]bool{}
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
					labels[l] = true
				}
			}
			out[m[1]] = metricInfo{labels: labels, kind: kind, source: "internal/metrics"}
		}
	}
	if len(out) == 0 {
		t.Fatal("internal/metrics registered no collector")
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if _, ok := out[f.GetName()]; ok {
			continue
		}
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		kind := strings.ToLower(f.GetType().String())
		if f.GetType() == dto.MetricType_GAUGE_HISTOGRAM {
			kind = "histogram"
		}
		out[f.GetName()] = metricInfo{labels: labels, kind: kind, source: "ops.NewRegistry"}
	}
	return out
}

// resolve maps a series name as written in a query to its metric: the
// name itself, or for histograms and summaries their _bucket/_sum/_count
// series. The bare name of a histogram has no series and is refused.
func resolve(known map[string]metricInfo, name string) (metricInfo, string, error) {
	if m, ok := known[name]; ok {
		if m.kind == "histogram" {
			return m, name, fmt.Errorf("%s is a histogram: query %s_bucket, _sum or _count", name, name)
		}
		return m, name, nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		m, ok := known[base]
		if !ok {
			continue
		}
		switch {
		case m.kind == "histogram":
			if suffix == "_bucket" {
				m.labels = withLabel(m.labels, "le")
			}
			return m, base, nil
		case m.kind == "summary" && suffix != "_bucket":
			return m, base, nil
		}
	}
	if m, ok := externalMetrics[name]; ok {
		return m, name, nil
	}
	return metricInfo{}, "", fmt.Errorf("unknown metric %s (not registered by internal/metrics or ops.NewRegistry)", name)
}

func withLabel(m map[string]bool, l string) map[string]bool {
	out := map[string]bool{l: true}
	for k := range m {
		out[k] = true
	}
	return out
}

// checkExpr checks every metric an expression uses, the labels its
// matchers and grouping name, and the fixed label values it compares
// with. It returns the labels the expression's series may carry (for
// $labels.X and {{X}} in templates) and the names of the metrics it uses.
func checkExpr(known map[string]metricInfo, expr string) (labels map[string]bool, used []string, errs []string) {
	p := parsePromQL(expr)
	if len(p.selectors) == 0 {
		return nil, nil, []string{"uses no metric"}
	}
	all := set(targetLabels...)
	for _, s := range p.selectors {
		m, base, err := resolve(known, s.name)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		used = append(used, base)
		for l := range m.labels {
			all[l] = true
		}
		for _, mt := range s.matchers {
			if mt.label == "__name__" || slices.Contains(targetLabels, mt.label) {
				continue
			}
			if !m.labels[mt.label] {
				errs = append(errs, fmt.Sprintf("%s has no label %q (labels: %s)", s.name, mt.label, keys(m.labels)))
				continue
			}
			if vals, ok := labelValues[base][mt.label]; ok && mt.op == "=" && !slices.Contains(vals, mt.value) {
				errs = append(errs, fmt.Sprintf("%s{%s=%q}: the code sets %s to one of %v", s.name, mt.label, mt.value, mt.label, vals))
			}
		}
	}
	for _, g := range p.grouping {
		if !all[g] {
			errs = append(errs, fmt.Sprintf("groups by %q, a label none of its metrics has (%s)", g, keys(all)))
		}
	}
	// After an aggregation only the grouping labels remain.
	if len(p.grouping) > 0 {
		labels = set(p.grouping...)
	} else {
		labels = all
	}
	return labels, used, errs
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

var (
	alertLabelRE  = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	legendLabelRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// TestParsePromQL checks the scanner the metric tests rely on.
func TestParsePromQL(t *testing.T) {
	p := parsePromQL(`histogram_quantile(0.99, sum by (sink, le) (rate(rollcall_sink_delivery_latency_seconds_bucket{sink=~"$sink", x!="a,b}"}[$__rate_interval]))) > 300
		and on (sink) max without(instance) (rollcall_sink_pending_messages) > 1e3 or absent(up{job="rollcall-poller"}) unless sum(x) by (source) # up_comment`)
	var names []string
	for _, s := range p.selectors {
		names = append(names, s.name)
	}
	if want := []string{"rollcall_sink_delivery_latency_seconds_bucket", "rollcall_sink_pending_messages", "up", "x"}; !slices.Equal(names, want) {
		t.Errorf("selectors %v, want %v", names, want)
	}
	if want := []string{"sink", "le", "sink", "instance", "source"}; !slices.Equal(p.grouping, want) {
		t.Errorf("grouping %v, want %v", p.grouping, want)
	}
	if m := p.selectors[0].matchers; len(m) != 2 || m[0] != (promMatcher{"sink", "=~", "$sink"}) || m[1] != (promMatcher{"x", "!=", "a,b}"}) {
		t.Errorf("matchers %+v", m)
	}
}

// TestAlertRulesUseExistingMetrics loads deployments/prometheus/alerts.yaml
// and checks each rule: every metric it queries is one the services
// register (histograms through _bucket/_sum/_count), every label in its
// matchers and by/without lists exists on those metrics, fixed label values
// (outcome) are ones the code sets, and every $labels.X in its annotations
// is a label the alert's series carry.
func TestAlertRulesUseExistingMetrics(t *testing.T) {
	known := knownMetrics(t)
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	used := map[string]bool{}
	names := map[string]bool{}
	n := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			n++
			name := r.Alert + r.Record
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert name", g.Name)
				continue
			}
			if names[r.Alert] && r.Labels["severity"] == "" {
				t.Errorf("%s: duplicate alert name without a distinguishing severity", name)
			}
			names[r.Alert] = true
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", name, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary annotation", name)
			}
			labels, metricsUsed, errs := checkExpr(known, r.Expr)
			for _, e := range errs {
				t.Errorf("%s: %s", name, e)
			}
			for _, m := range metricsUsed {
				used[m] = true
			}
			for k, v := range r.Annotations {
				for _, m := range alertLabelRE.FindAllStringSubmatch(v, -1) {
					if labels != nil && !labels[m[1]] {
						t.Errorf("%s: annotation %s uses $labels.%s, which the alert's series do not carry (%s)", name, k, m[1], keys(labels))
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("alerts.yaml has no rules")
	}
	// The issue asks for alerts on these.
	for _, m := range []string{
		"rollcall_source_healthy", "rollcall_source_last_success_timestamp_seconds", "rollcall_source_token_expiry_timestamp_seconds",
		"rollcall_source_removals_held", "rollcall_source_api_requests_total", "rollcall_sink_dead_letters_total",
		"rollcall_sink_pending_messages", "rollcall_sink_delivery_latency_seconds", "up",
	} {
		if !used[m] {
			t.Errorf("no alert uses %s", m)
		}
	}
}

// grafanaTarget is the part of a panel target the test reads.
type grafanaTarget struct {
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	RefID        string `json:"refId"`
}

type grafanaPanel struct {
	ID      int             `json:"id"`
	Type    string          `json:"type"`
	Title   string          `json:"title"`
	Targets []grafanaTarget `json:"targets"`
	Panels  []grafanaPanel  `json:"panels"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// TestDashboardUsesExistingMetrics loads the Grafana dashboard and checks
// every panel query and template variable the way the alert rules are
// checked, plus: {{label}} in legends is a label of the query's series,
// $variables used in queries are defined, panel ids are unique, and every
// metric rollcall registers is shown somewhere.
func TestDashboardUsesExistingMetrics(t *testing.T) {
	known := knownMetrics(t)
	b, err := os.ReadFile("grafana/rollcall-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	used := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Errorf("variable %s: query %s", v.Name, v.Query)
				continue
			}
			q = obj.Query
		}
		m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q))
		if m == nil {
			t.Errorf("variable %s: want label_values(metric, label), got %q", v.Name, q)
			continue
		}
		labels, metricsUsed, errs := checkExpr(known, m[1])
		for _, e := range errs {
			t.Errorf("variable %s: %s", v.Name, e)
		}
		if labels != nil && !labels[m[2]] {
			t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
		}
		for _, u := range metricsUsed {
			used[u] = true
		}
	}
	varRE := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	ids := map[int]bool{}
	var walk func(ps []grafanaPanel)
	queries := 0
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil {
				t.Errorf("panel %q has no gridPos", p.Title)
			}
			walk(p.Panels)
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				where := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
				labels, metricsUsed, errs := checkExpr(known, tg.Expr)
				for _, e := range errs {
					t.Errorf("%s: %s", where, e)
				}
				for _, u := range metricsUsed {
					used[u] = true
				}
				for _, m := range legendLabelRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
					if labels != nil && !labels[m[1]] {
						t.Errorf("%s: legend {{%s}} is not a label of its series (%s)", where, m[1], keys(labels))
					}
				}
				for _, m := range varRE.FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("%s: uses $%s, which is not a dashboard variable", where, m[1])
					}
				}
			}
		}
	}
	walk(d.Panels)
	// Panels stay within the 24-column grid and do not overlap.
	for i, a := range d.Panels {
		if a.GridPos == nil {
			continue
		}
		if a.GridPos.X < 0 || a.GridPos.W <= 0 || a.GridPos.X+a.GridPos.W > 24 || a.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", a.Title, *a.GridPos)
		}
		for _, b := range d.Panels[i+1:] {
			if b.GridPos == nil {
				continue
			}
			p, q := *a.GridPos, *b.GridPos
			if p.X < q.X+q.W && q.X < p.X+p.W && p.Y < q.Y+q.H && q.Y < p.Y+p.H {
				t.Errorf("panels %q and %q overlap", a.Title, b.Title)
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for name, m := range known {
		if m.source == "internal/metrics" && !used[name] {
			t.Errorf("the dashboard shows no panel for %s", name)
		}
	}
}

// TestMetricCheckCatchesMistakes makes sure the checks above would fail on
// the mistakes they are there for.
func TestMetricCheckCatchesMistakes(t *testing.T) {
	known := knownMetrics(t)
	for _, c := range []struct{ expr, want string }{
		{`rollcall_source_healthy_typo == 0`, "unknown metric"},
		{`rate(rollcall_source_run_duration_seconds[5m])`, "is a histogram"},
		{`rollcall_sink_pending_messages{source="x"}`, `no label "source"`},
		{`sum by (kind) (rollcall_sink_dead_letters_total)`, `groups by "kind"`},
		{`rollcall_sink_deliveries_total{outcome="failed"}`, "the code sets outcome"},
		{`rollcall_source_runs_total{outcome="failed"}`, "the code sets outcome"},
		{`process_resident_memory_byte`, "unknown metric"},
	} {
		_, _, errs := checkExpr(known, c.expr)
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: errors %q, want one containing %q", c.expr, errs, c.want)
		}
	}
	for _, ok := range []string{
		`histogram_quantile(0.9, sum by (le, source) (rate(rollcall_source_run_duration_seconds_bucket[5m])))`,
		`sum by (source, code) (rate(rollcall_source_api_requests_total{code!~"2.."}[5m]))`,
		`rollcall_sink_deliveries_total{outcome="dead_lettered"}`,
		`go_goroutines{job="rollcall-poller"}`,
		`rate(process_cpu_seconds_total[5m])`,
	} {
		if _, _, errs := checkExpr(known, ok); len(errs) > 0 {
			t.Errorf("%s: unexpected %q", ok, errs)
		}
	}
}

// TestPromtool runs Prometheus' own checks when promtool is installed
// (Debian: apt-get install prometheus): the rules file, the rules' unit
// tests in alerts_test.yaml, and the compose configuration with its rule
// file paths pointed at this directory.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "rules", "alerts.yaml")
	run("test", "rules", "alerts_test.yaml")
	b, err := os.ReadFile("prometheus/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "prometheus.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "/etc/prometheus/", abs+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	run("check", "config", cfg)
}
