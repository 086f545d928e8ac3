package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// requestLabels are the labels of one requests_total series.
type requestLabels struct {
	method, client string
	code           codes.Code
}

// requestCounters are requests_total's series, looked up once per label
// combination: WithLabelValues hashes the labels and allocates on every
// call. Methods, the policy's clients and codes are few, so the map stays
// small (as the CounterVec's own series would).
type requestCounters struct {
	vec *prometheus.CounterVec
	mu  sync.RWMutex
	m   map[requestLabels]prometheus.Counter
}

// CountRequest counts one call of method by client that ended with code,
// in requests_total.
func (m *Metrics) CountRequest(method, client string, code codes.Code) {
	rc := &m.requests
	k := requestLabels{method, client, code}
	rc.mu.RLock()
	c, ok := rc.m[k]
	rc.mu.RUnlock()
	if !ok {
		c = rc.vec.WithLabelValues(method, client, code.String())
		rc.mu.Lock()
		rc.m[k] = c
		rc.mu.Unlock()
	}
	c.Inc()
}
