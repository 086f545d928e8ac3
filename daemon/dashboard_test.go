package daemon_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// dashboardFile is the Grafana dashboard shipped for the daemon's metrics,
// in the Helm chart, which can only read files inside its directory.
const dashboardFile = "../deploy/helm/portvakt/dashboards/portvakt.json"

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	// A series selector of one of the daemon's metrics, with its matchers.
	selectorPattern = regexp.MustCompile(`\b((?:portvakt|grpc_server)_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcherPattern  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
)

// TestDashboardQueriesExist: every metric the dashboard's queries name is
// one a real daemon exports, under that name, with the labels the queries
// match on: a renamed metric or label breaks this test rather than a
// panel.
func TestDashboardQueriesExist(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("%s has no title or uid", dashboardFile)
	}

	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	// A token and a denial: the series that exist only once they happened.
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	_, _, _ = call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"})
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")

	var queries []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			queries = append(queries, target.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if text, ok := q["query"].(string); ok {
				queries = append(queries, text)
			}
		}
	}
	named := 0
	for _, q := range queries {
		for _, m := range selectorPattern.FindAllStringSubmatch(q, -1) {
			named++
			f := family(families, m[1])
			if f == nil {
				t.Errorf("the dashboard queries %s, which the daemon does not export (in %q)", m[1], q)
				continue
			}
			for _, lm := range matcherPattern.FindAllStringSubmatch(m[2], -1) {
				if !hasLabel(f, lm[1]) {
					t.Errorf("the dashboard matches %s on label %s, which it does not have (in %q)", m[1], lm[1], q)
				}
			}
		}
	}
	for _, want := range []string{"grpc_server_handling_seconds_bucket", "portvakt_maskinporten_errors_total", "portvakt_hsm_sign_seconds_bucket",
		"portvakt_maskinporten_breaker_open", "portvakt_hsm_up", "portvakt_certificate_not_after_timestamp_seconds", "portvakt_grpc_connections"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	if named == 0 {
		t.Fatal("no metric found in the dashboard's queries")
	}
}

// family is the metric family a query's name reads: a histogram's
// _bucket, _sum and _count are series of the histogram.
func family(families map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f, ok := families[name]; ok {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := families[base]; ok && f.GetType() == dto.MetricType_HISTOGRAM {
				return f
			}
		}
	}
	return nil
}

func hasLabel(f *dto.MetricFamily, label string) bool {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				return true
			}
		}
	}
	return false
}
