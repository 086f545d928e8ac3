package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// curried holds a counter vector's series by a comparable key, each looked
// up once: WithLabelValues hashes the label values and allocates on every
// call, and the cached token path counts twice per call. The keys (methods,
// the policy's clients, codes, environments, token kinds) are few, so the
// map stays as small as the vector's own series.
type curried[K comparable] struct {
	vec *prometheus.CounterVec
	mu  sync.RWMutex
	m   map[K]prometheus.Counter
}

func newCurried[K comparable](vec *prometheus.CounterVec) *curried[K] {
	return &curried[K]{vec: vec, m: map[K]prometheus.Counter{}}
}

// inc counts one for key k, whose series has the label values labels
// gives (called only the first time).
func (c *curried[K]) inc(k K, labels func() []string) {
	c.mu.RLock()
	counter, ok := c.m[k]
	c.mu.RUnlock()
	if !ok {
		counter = c.vec.WithLabelValues(labels()...)
		c.mu.Lock()
		c.m[k] = counter
		c.mu.Unlock()
	}
	counter.Inc()
}

// requestLabels are the labels of one requests_total series.
type requestLabels struct {
	method, client string
	code           codes.Code
}

// CountRequest counts one call of method by client that ended with code,
// in requests_total.
func (m *Metrics) CountRequest(method, client string, code codes.Code) {
	m.requests.inc(requestLabels{method, client, code}, func() []string { return []string{method, client, code.String()} })
}

// tokenLabels are the labels of one tokens_total series.
type tokenLabels struct{ environment, kind string }

// CountToken counts one token handed out in environment, of kind own,
// delegated or system_user, in tokens_total.
func (m *Metrics) CountToken(environment, kind string) {
	m.tokens.inc(tokenLabels{environment, kind}, func() []string { return []string{environment, kind} })
}
