package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The grpc_server_* series are go-grpc-middleware's: every method's at 0
// once the server is initialised, with its type, and each call counted in
// them with no allocation.
func TestGRPCServerMetrics(t *testing.T) {
	m := New()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	m.GRPCServer.InitializeMetrics(srv)

	const check = "/grpc.health.v1.Health/Check"
	s := m.GRPCServer.Method(check)
	s.Start()
	s.End(codes.OK, time.Millisecond)
	s.Start()
	s.End(codes.PermissionDenied, time.Millisecond)

	families := gather(t, m)
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_started_total", map[string]string{"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}, 2},
		{"grpc_server_msg_received_total", map[string]string{"grpc_method": "Check"}, 2},
		{"grpc_server_msg_sent_total", map[string]string{"grpc_method": "Check"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "OK"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "PermissionDenied"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "Unavailable"}, 0},
		{"grpc_server_handling_seconds", map[string]string{"grpc_method": "Check"}, 2},
		{"grpc_server_started_total", map[string]string{"grpc_type": "server_stream", "grpc_method": "Watch"}, 0},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Watch", "grpc_code": "DataLoss"}, 0},
	}
	for _, tt := range tests {
		got, ok := find(families[tt.family], tt.labels)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (found: %v), want %v", tt.family, tt.labels, got, ok, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		s := m.GRPCServer.Method(check)
		s.Start()
		s.End(codes.OK, time.Millisecond)
	}); n != 0 {
		t.Errorf("a call allocates %v times", n)
	}
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	return byName
}

// find is the value of the family's series with the labels (a counter's
// value, a histogram's count).
func find(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	for _, mt := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range mt.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		if h := mt.GetHistogram(); h != nil {
			return float64(h.GetSampleCount()), true
		}
		return mt.GetCounter().GetValue(), true
	}
	return 0, false
}
