package daemon_test

import (
	"testing"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/maskinporten"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestErrorSeriesExistFromStart: a fresh daemon, before any call, exports
// its error counters at 0 for every label value known in advance (each
// MP code and "network" per environment, each audit gap cause, each
// policy reload result), so that a rate or an alert on them works before
// the first error.
func TestErrorSeriesExistFromStart(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	type series struct {
		name   string
		labels map[string]string
	}
	var want []series
	for _, code := range append(maskinporten.Codes(), "network") {
		want = append(want, series{"portvakt_maskinporten_errors_total", map[string]string{"environment": "sim", "mp_code": code}})
	}
	for _, cause := range []string{"write", "fsync", "deleted", "replaced", "truncated", "appended"} {
		want = append(want, series{"portvakt_audit_gaps_total", map[string]string{"cause": cause}})
	}
	want = append(want,
		series{"portvakt_policy_reloads_total", map[string]string{"result": "failed"}},
		series{"portvakt_maskinporten_request_seconds", map[string]string{"environment": "sim"}},
		series{"grpc_server_handled_total", map[string]string{"grpc_method": "GetToken", "grpc_code": "Unavailable"}},
	)
	for _, s := range want {
		got, ok := value(families, s.name, s.labels)
		if !ok {
			t.Errorf("%s%v is not exported before the first call", s.name, s.labels)
		} else if got != 0 {
			t.Errorf("%s%v = %v before any call, want 0", s.name, s.labels, got)
		}
	}
}

// TestGRPCLatencyHistogram: each call is timed per method in
// grpc_server_handling_seconds, and counted by method and code.
func TestGRPCLatencyHistogram(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	_, _, _ = call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"}) // denied
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	getToken := map[string]string{"grpc_service": "portvakt.v1.TokenService", "grpc_method": "GetToken", "grpc_type": "unary"}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_handling_seconds", getToken, 2}, // the histogram's count
		{"grpc_server_handled_total", with(getToken, "grpc_code", "OK"), 1},
		{"grpc_server_handled_total", with(getToken, "grpc_code", "PermissionDenied"), 1},
		{"grpc_server_started_total", getToken, 2},
		{"grpc_server_handling_seconds", map[string]string{"grpc_method": "WhoAmI"}, 0},
	} {
		got, ok := value(families, tt.name, tt.labels)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (exported %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	h := families["grpc_server_handling_seconds"]
	if h == nil || h.GetMetric()[0].GetHistogram() == nil || len(h.GetMetric()[0].GetHistogram().GetBucket()) < 10 {
		t.Errorf("grpc_server_handling_seconds is not a histogram with its buckets: %v", h)
	}
}

func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for lk, lv := range labels {
		out[lk] = lv
	}
	return out
}
