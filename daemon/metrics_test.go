package daemon_test

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestMetrics scrapes /metrics after calls of every kind and checks the
// metrics the operators need, with their labels and values.
func TestMetrics(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	own := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	for range 3 {
		if _, _, err := call(t, e, own); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _ = call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"})
	_, _, _ = call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeNotGranted}, Environment: "sim"})
	if err := e.daemon.Policies().Reload(); err != nil {
		t.Fatal(err)
	}

	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	tests := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"portvakt_requests_total", map[string]string{"method": "/portvakt.v1.TokenService/GetToken", "client": "billing", "code": "OK"}, 3},
		{"portvakt_requests_total", map[string]string{"client": "billing", "code": "PermissionDenied"}, 1},
		{"portvakt_requests_total", map[string]string{"client": "billing", "code": "FailedPrecondition"}, 1},
		{"portvakt_policy_denials_total", map[string]string{"client": "billing"}, 1},
		{"portvakt_tokens_total", map[string]string{"environment": "sim", "kind": "own"}, 3},
		{"portvakt_cache_hits_total", nil, 2},
		{"portvakt_cache_misses_total", nil, 2},
		{"portvakt_cache_refreshes_total", nil, 0},
		{"portvakt_hsm_sign_seconds", nil, 2}, // the histogram's count
		{"portvakt_hsm_errors_total", nil, 0},
		{"portvakt_hsm_reconnects_total", nil, 0},
		{"portvakt_maskinporten_request_seconds", map[string]string{"environment": "sim"}, 2},
		{"portvakt_maskinporten_errors_total", map[string]string{"environment": "sim", "mp_code": "MP-200"}, 1},
		{"portvakt_certificate_not_after_timestamp_seconds", map[string]string{"environment": "sim"}, float64(w.Chain[0].NotAfter.Unix())},
		{"portvakt_certificate_expiring_soon", map[string]string{"environment": "sim"}, 0},
		{"portvakt_policy_reloads_total", map[string]string{"result": "ok"}, 1},
		// A miss, two hits (one record each), a denial and a refusal.
		{"portvakt_audit_write_seconds", nil, 3 + 1 + 1 + 1 + 3},
		{"portvakt_audit_write_failures_total", nil, 0},
		{"portvakt_audit_last_seq", nil, 10},
		{"portvakt_audit_records_total", nil, 10},
		{"portvakt_audit_writes_total", nil, 1}, // calls one after another: a write each, but counted, not assumed
	}
	for _, tt := range tests {
		got, ok := value(families, tt.name, tt.labels)
		if !ok {
			t.Errorf("%s%v is not exported", tt.name, tt.labels)
			continue
		}
		if got < tt.min {
			t.Errorf("%s%v = %v, want at least %v", tt.name, tt.labels, got, tt.min)
		}
	}
	if got, _ := value(families, "portvakt_hsm_sign_seconds", nil); got != 2 {
		t.Errorf("%v HSM signatures measured, want exactly the 2 fetches", got)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value is a counter's or gauge's value, or a histogram's count, summed
// over the series whose labels include labels.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
series:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue series
			}
		}
		found = true
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// TestCertificateExpiringSoon: a certificate inside the warning window is
// flagged in the metrics (the test's eSeal lives a year; the window is
// made longer than that).
func TestCertificateExpiringSoon(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w, func(cfg string) string { return cfg + "certificates: {warn_before: 9000h}\n" })
	waitFor(t, "the certificate check", func() bool {
		got, ok := value(scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics"), "portvakt_certificate_expiring_soon", map[string]string{"environment": "sim"})
		return ok && got == 1
	})
	if logs := e.logs.String(); !strings.Contains(logs, "certificate expires soon") || !strings.Contains(logs, `"environment":"sim"`) {
		t.Fatalf("no expiry warning in the log:\n%s", logs)
	}
}

// metric is one series of the daemon's /metrics; the test fails when the
// daemon does not export it.
func metric(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := value(scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics"), name, labels)
	if !ok {
		t.Fatalf("%s%v is not exported", name, labels)
	}
	return v
}
