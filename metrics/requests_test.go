package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
)

// CountRequest counts each combination in its own requests_total series,
// and a repeat costs no allocation (WithLabelValues per call would).
func TestCountRequest(t *testing.T) {
	m := New()
	const method = "/portvakt.v1.TokenService/GetToken"
	calls := []struct {
		client string
		code   codes.Code
	}{{"billing", codes.OK}, {"billing", codes.OK}, {"billing", codes.PermissionDenied}, {"", codes.Unauthenticated}}
	for _, c := range calls {
		m.CountRequest(method, c.client, c.code)
	}
	want := map[[2]string]float64{{"billing", "OK"}: 2, {"billing", "PermissionDenied"}: 1, {"", "Unauthenticated"}: 1}
	for labels, n := range want {
		if got := value(t, m, method, labels[0], labels[1]); got != n {
			t.Errorf("requests_total{client=%q,code=%q} = %v, want %v", labels[0], labels[1], got, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { m.CountRequest(method, "billing", codes.OK) }); n != 0 {
		t.Errorf("a repeat allocates %v times", n)
	}
}

func value(t *testing.T, m *Metrics, labels ...string) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Requests.WithLabelValues(labels...).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}
