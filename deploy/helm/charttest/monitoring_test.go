package charttest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/portvakt/portvakt/metrics"
)

// seriesPattern is a name of one of the daemon's metrics in an
// annotation's text.
var seriesPattern = regexp.MustCompile(`\b(?:portvakt|grpc_server)_[a-z0-9_]+\b`)

// targetLabels are those Prometheus (the Operator's ServiceMonitor) adds
// to every series it scrapes: the rules' selector matches on them.
var targetLabels = map[string]bool{"namespace": true, "job": true, "pod": true, "instance": true, "service": true, "endpoint": true, "container": true}

// TestMonitoring: the ServiceMonitor scrapes the Service's metrics port;
// the PrometheusRule has the alerts the chart promises, each with a
// severity and a summary; every metric its expressions and descriptions
// name is one the daemon exports, and every label its expressions match
// on is one of that metric's or one Prometheus adds.
func TestMonitoring(t *testing.T) {
	exported := exportedMetrics(t)
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		svc := only[*corev1.Service](t, objs)
		for _, sm := range all[*ServiceMonitor](objs) {
			sel, err := metaSelector(&sm.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(svc.Labels)) {
				t.Errorf("the ServiceMonitor's selector does not match the Service: %v", err)
			}
			for _, ep := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					t.Errorf("the ServiceMonitor scrapes port %q, which the Service does not have", ep.Port)
				}
			}
		}
		for _, pr := range all[*PrometheusRule](objs) {
			alerts := map[string]bool{}
			for _, r := range rules(pr) {
				alerts[r.Alert] = true
				if r.Alert != "" && (r.Labels["severity"] == "" || r.Annotations["summary"] == "") {
					t.Errorf("alert %s has no severity or summary", r.Alert)
				}
				for _, sel := range selectors(t, r) {
					if sel.name == "up" {
						continue // Prometheus's own, per target
					}
					known, ok := exported.labels(sel.name)
					if !ok {
						t.Errorf("alert %s: %s is not a metric the daemon exports", r.Alert, sel.name)
						continue
					}
					for _, m := range sel.matchers {
						if !known[m.Name] && !targetLabels[m.Name] {
							t.Errorf("alert %s matches %s on label %s, which it does not have (it has %v)", r.Alert, sel.name, m.Name, keysOf(known))
						}
					}
				}
				for _, text := range r.Annotations {
					for _, name := range seriesPattern.FindAllString(text, -1) {
						if _, ok := exported.labels(name); !ok {
							t.Errorf("alert %s: its annotations name %s, which the daemon does not export", r.Alert, name)
						}
					}
				}
			}
			for _, a := range []string{"PortvaktHSMDown", "PortvaktCertificateExpiring", "PortvaktAuditBroken", "PortvaktMaskinportenErrors",
				"PortvaktMaskinportenBreakerOpen", "PortvaktTLSReloadFailed", "PortvaktTLSCertificateExpiring", "PortvaktTLSNotWatched", "PortvaktGetTokenSlow",
				"PortvaktKeyRotationFailing", "PortvaktRegisteredKeyExpiring"} {
				if !alerts[a] {
					t.Errorf("no alert %s", a)
				}
			}
		}
	})
}

// TestAlertedCountersExistAtStart: a counter an alert takes the increase
// or rate of, for one label value (result="failed"), exists at 0 as soon
// as the metrics are made. increase() does not count a series' first
// sample: a counter born at 1 on the first failure would never alert.
func TestAlertedCountersExistAtStart(t *testing.T) {
	families, err := metrics.New().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	atStart := map[string][]labels.Set{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			ls := labels.Set{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			atStart[f.GetName()] = append(atStart[f.GetName()], ls)
		}
	}
	checked := 0
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		for _, pr := range all[*PrometheusRule](objs) {
			for _, r := range rules(pr) {
				for _, sel := range selectors(t, r) {
					if !sel.counted || !strings.HasSuffix(sel.name, "_total") {
						continue
					}
					pinned := labels.Set{}
					for _, m := range sel.matchers {
						if m.Type == promlabels.MatchEqual && !targetLabels[m.Name] {
							pinned[m.Name] = m.Value
						}
					}
					if len(pinned) == 0 {
						continue // the daemon makes its series per environment, method...
					}
					checked++
					if !slices.ContainsFunc(atStart[sel.name], func(ls labels.Set) bool { return labels.SelectorFromSet(pinned).Matches(ls) }) {
						t.Errorf("alert %s: %s{%s} does not exist at the start (there are %v): its first increase goes unseen", r.Alert, sel.name, pinned, atStart[sel.name])
					}
				}
			}
		}
	})
	if checked == 0 {
		t.Fatal("no alert takes the increase of a counter for one label value: the test checked nothing")
	}
}

// TestTLSAndLatencyAlerts: the TLS and latency alerts render with the
// defaults and with other values, their thresholds in the expressions and
// summaries, on the release's series; values that are not numbers are
// refused.
func TestTLSAndLatencyAlerts(t *testing.T) {
	defaultSel := `{namespace="portvakt", job="pv-portvakt"`
	for _, tt := range []struct {
		name string
		sets []string
		want map[string]string // alert: a part of its expression
		// summary: a part of an alert's summary
		summary map[string]string
	}{
		{
			name: "defaults",
			sets: []string{"prometheusRule.enabled=true"},
			want: map[string]string{
				"PortvaktTLSReloadFailed":        `increase(portvakt_tls_reloads_total` + defaultSel + `, result="failed"}[15m])) > 0`,
				"PortvaktTLSCertificateExpiring": `(portvakt_tls_certificate_not_after_timestamp_seconds` + defaultSel + `} > 0) - time() < 604800`,
				"PortvaktTLSNotWatched":          `(portvakt_tls_watching` + defaultSel + `}) == 0`,
				"PortvaktGetTokenSlow":           `histogram_quantile(0.99, sum by (namespace, le) (rate(grpc_server_handling_seconds_bucket` + defaultSel + `, grpc_service="portvakt.v1.TokenService", grpc_method="GetToken"}[5m]))) > 1`,
			},
			summary: map[string]string{"PortvaktTLSCertificateExpiring": "within 7 days", "PortvaktGetTokenSlow": "above 1 s"},
		},
		{
			name: "hours-long certificates, a tighter latency, another selector",
			sets: []string{"prometheusRule.enabled=true", "prometheusRule.tlsCertificateDays=0.25", "prometheusRule.getTokenLatencySeconds=0.25",
				`prometheusRule.selector=service="portvakt"`},
			want: map[string]string{
				"PortvaktTLSReloadFailed":        `increase(portvakt_tls_reloads_total{service="portvakt", result="failed"}[15m])) > 0`,
				"PortvaktTLSCertificateExpiring": `(portvakt_tls_certificate_not_after_timestamp_seconds{service="portvakt"} > 0) - time() < 21600`,
				"PortvaktTLSNotWatched":          `(portvakt_tls_watching{service="portvakt"}) == 0`,
				"PortvaktGetTokenSlow":           `{service="portvakt", grpc_service="portvakt.v1.TokenService", grpc_method="GetToken"}[5m]))) > 0.25`,
			},
			summary: map[string]string{"PortvaktTLSCertificateExpiring": "within 0.25 days", "PortvaktGetTokenSlow": "above 0.25 s"},
		},
		{
			name: "whole days",
			sets: []string{"prometheusRule.enabled=true", "prometheusRule.tlsCertificateDays=30"},
			want: map[string]string{"PortvaktTLSCertificateExpiring": `- time() < 2592000`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := renderSets(t, tt.sets...)
			byName := map[string]Rule{}
			for _, r := range rules(only[*PrometheusRule](t, objs)) {
				byName[r.Alert] = r
			}
			for alert, want := range tt.want {
				r, ok := byName[alert]
				if !ok {
					t.Errorf("no alert %s", alert)
					continue
				}
				if !strings.Contains(r.Expr, want) {
					t.Errorf("alert %s: expr\n\t%s\nwant it to hold\n\t%s", alert, r.Expr, want)
				}
				if !slices.Contains([]string{"warning", "critical"}, r.Labels["severity"]) || r.Annotations["description"] == "" {
					t.Errorf("alert %s: severity %q, description %q", alert, r.Labels["severity"], r.Annotations["description"])
				}
			}
			for alert, want := range tt.summary {
				if s := byName[alert].Annotations["summary"]; !strings.Contains(s, want) {
					t.Errorf("alert %s: summary %q, want it to say %q", alert, s, want)
				}
			}
		})
	}
	for _, tt := range []struct{ set, want string }{
		{"prometheusRule.tlsCertificateDays=a week", `prometheusRule.tlsCertificateDays: "a week" is not a number of days`},
		{"prometheusRule.tlsCertificateDays=-1", `prometheusRule.tlsCertificateDays: "-1" is not a number of days`},
		{"prometheusRule.getTokenLatencySeconds=1s", `prometheusRule.getTokenLatencySeconds: "1s" is not a number of seconds`},
	} {
		if _, err := helmTemplate(t, nil, "prometheusRule.enabled=true", tt.set); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--set %s: %v\nwant it refused saying %s", tt.set, err, tt.want)
		}
	}
}

// TestGrafanaDashboard: the dashboard's ConfigMap renders only when
// enabled, with the sidecar's label (and any other asked for), and holds
// the chart's dashboard file as it is: valid JSON, with a title and uid.
func TestGrafanaDashboard(t *testing.T) {
	file, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "portvakt.json"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, objs []Object, enabled bool, wantLabels, wantAnnotations map[string]string) {
		t.Helper()
		var found []*corev1.ConfigMap
		for _, cm := range all[*corev1.ConfigMap](objs) {
			if _, ok := cm.Data["portvakt.json"]; ok {
				found = append(found, cm)
			}
		}
		if !enabled {
			if len(found) != 0 {
				t.Fatalf("%d dashboard ConfigMaps rendered with grafanaDashboard.enabled false", len(found))
			}
			return
		}
		if len(found) != 1 {
			t.Fatalf("%d dashboard ConfigMaps rendered, want 1", len(found))
		}
		cm := found[0]
		for k, v := range wantLabels {
			if cm.Labels[k] != v {
				t.Errorf("the dashboard ConfigMap's label %s is %q, want %q (labels: %v)", k, cm.Labels[k], v, cm.Labels)
			}
		}
		for k, v := range wantAnnotations {
			if cm.Annotations[k] != v {
				t.Errorf("the dashboard ConfigMap's annotation %s is %q, want %q", k, cm.Annotations[k], v)
			}
		}
		text := cm.Data["portvakt.json"]
		if !bytes.Equal([]byte(text), file) {
			t.Errorf("the ConfigMap's portvakt.json (%d bytes) is not dashboards/portvakt.json (%d bytes)", len(text), len(file))
		}
		var d struct {
			Title  string `json:"title"`
			UID    string `json:"uid"`
			Panels []any  `json:"panels"`
		}
		if err := json.Unmarshal([]byte(text), &d); err != nil {
			t.Fatalf("the ConfigMap's portvakt.json: %v", err)
		}
		if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
			t.Errorf("the ConfigMap's dashboard has title %q, uid %q, %d panels", d.Title, d.UID, len(d.Panels))
		}
	}
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		v := values(t, set)
		wantLabels := map[string]string{}
		if m, ok := v.get("grafanaDashboard", "labels"); ok {
			for k, x := range m.(map[string]any) {
				wantLabels[k], _ = x.(string)
			}
		}
		check(t, objs, v.bool("grafanaDashboard", "enabled"), wantLabels, nil)
	})
	for _, tt := range []struct {
		name            string
		sets            []string
		enabled         bool
		labels, annotns map[string]string
	}{
		{"off by default", nil, false, nil, nil},
		{"on", []string{"grafanaDashboard.enabled=true"}, true, map[string]string{"grafana_dashboard": "1", "app.kubernetes.io/instance": "pv"}, nil},
		{"another label and a folder", []string{"grafanaDashboard.enabled=true", "grafanaDashboard.labels.dashboards=portvakt", "grafanaDashboard.annotations.grafana_folder=Tokens"},
			true, map[string]string{"grafana_dashboard": "1", "dashboards": "portvakt"}, map[string]string{"grafana_folder": "Tokens"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := renderSets(t, tt.sets...)
			check(t, objs, tt.enabled, tt.labels, tt.annotns)
		})
	}
}

// selector is a series selector in a rule's expression.
type selector struct {
	name     string
	matchers []*promlabels.Matcher // less the name's
	// counted: inside an increase() or rate().
	counted bool
}

// selectors parses the rule's expression with Prometheus's own parser,
// as Prometheus will (a rule that does not parse is an error), and
// returns its series selectors.
func selectors(t *testing.T, r Rule) []selector {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
	if err != nil {
		t.Errorf("alert %s: its expression does not parse: %v\n\t%s", r.Alert, err, r.Expr)
		return nil
	}
	var out []selector
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		sel := selector{name: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name != promlabels.MetricName {
				sel.matchers = append(sel.matchers, m)
			}
		}
		for _, p := range path {
			if c, ok := p.(*parser.Call); ok && (c.Func.Name == "increase" || c.Func.Name == "rate") {
				sel.counted = true
			}
		}
		out = append(out, sel)
		return nil
	})
	if len(out) == 0 {
		t.Errorf("alert %s: no series in its expression %s", r.Alert, r.Expr)
	}
	return out
}

// rules are the PrometheusRule's rules, all groups.
func rules(pr *PrometheusRule) []Rule {
	var rs []Rule
	for _, g := range pr.Spec.Groups {
		rs = append(rs, g.Rules...)
	}
	return rs
}

// metricLabels are the daemon's metrics by name, each with its labels.
type metricLabels map[string]map[string]bool

// labels are the labels of the series name: a metric's, or a histogram's
// _bucket (with le), _sum or _count.
func (e metricLabels) labels(name string) (map[string]bool, bool) {
	if ls, ok := e[name]; ok {
		return ls, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if ls, ok := e[base]; ok {
				if suffix == "_bucket" {
					ls = withLabel(ls, "le")
				}
				return ls, true
			}
		}
	}
	return nil, false
}

func withLabel(m map[string]bool, k string) map[string]bool {
	out := map[string]bool{k: true}
	for key := range m {
		out[key] = true
	}
	return out
}

// exportedMetrics are the names and labels metrics.New defines, from its
// collectors' descriptions (a vector with no series yet is not in
// Gather), the gRPC server's grpc_server_* among them.
func exportedMetrics(t *testing.T) metricLabels {
	t.Helper()
	m := metrics.New()
	names := metricLabels{}
	desc := regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue // bookkeeping of its own, such as the requests' series
		}
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			match := desc.FindStringSubmatch(d.String())
			if match == nil {
				t.Fatalf("cannot read the description %s", d)
			}
			ls := map[string]bool{}
			for _, l := range strings.Split(match[2], ",") {
				if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
					ls[l] = true
				}
			}
			names[match[1]] = ls
		}
	}
	for name, label := range map[string]string{"portvakt_hsm_up": "environment", "portvakt_audit_broken": "", "grpc_server_handling_seconds": "grpc_method"} {
		if ls, ok := names[name]; !ok || (label != "" && !ls[label]) {
			t.Fatalf("reading the daemon's metrics found %v, without %s (labels %s)", keysOf(names), name, label)
		}
	}
	return names
}
