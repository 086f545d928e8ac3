package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// GRPCServerMetrics are the grpc_server_* metrics, named, labelled and
// explained as go-grpc-middleware's prometheus provider has them (so
// dashboards and alerts read them unchanged), with each method's series
// looked up once rather than on every call: the provider's interceptor
// builds the label values and hashes them for four series per call. The
// request interceptor counts each call here, after it turned a panic into
// its code.
type GRPCServerMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec

	mu      sync.RWMutex
	methods map[string]*MethodSeries // by full method name
}

// MethodSeries are one method's series.
type MethodSeries struct {
	typ, service, method    string
	vec                     *prometheus.CounterVec // handled, for a code gRPC does not define
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	handled                 [codes.Unauthenticated + 1]prometheus.Counter // by code, every code gRPC defines
}

// grpcLabels are the provider's labels: type, service, method (and code).
var grpcLabels = []string{"grpc_type", "grpc_service", "grpc_method"}

func newGRPCServerMetrics(r *prometheus.Registry) *GRPCServerMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(grpcLabels[:3:3], labels...))
		r.MustRegister(c)
		return c
	}
	g := &GRPCServerMetrics{
		started:  counter("grpc_server_started_total", "Total number of RPCs started on the server."),
		handled:  counter("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure.", "grpc_code"),
		received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server."),
		sent:     counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server."),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: latencyBuckets,
		}, grpcLabels),
		methods: map[string]*MethodSeries{},
	}
	r.MustRegister(g.handling)
	return g
}

// InitializeMetrics makes every series of every method of srv, at 0 from
// the start.
func (g *GRPCServerMetrics) InitializeMetrics(srv *grpc.Server) {
	for service, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			g.series("/"+service+"/"+m.Name, methodType(m))
		}
	}
}

// Method is the series of fullMethod, a unary method, for its calls.
func (g *GRPCServerMetrics) Method(fullMethod string) *MethodSeries {
	g.mu.RLock()
	s := g.methods[fullMethod]
	g.mu.RUnlock()
	if s == nil {
		s = g.series(fullMethod, "unary")
	}
	return s
}

// Start counts a call started, and its request received.
func (s *MethodSeries) Start() {
	s.started.Inc()
	s.received.Inc()
}

// End counts a call ended with code after d, and its reply sent when it
// succeeded.
func (s *MethodSeries) End(code codes.Code, d time.Duration) {
	if code == codes.OK {
		s.sent.Inc()
	}
	if int(code) < len(s.handled) {
		s.handled[code].Inc()
	} else {
		s.vec.WithLabelValues(s.typ, s.service, s.method, code.String()).Inc()
	}
	s.handling.Observe(d.Seconds())
}

// series returns the method's series, made on first use.
func (g *GRPCServerMetrics) series(fullMethod, typ string) *MethodSeries {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.methods[fullMethod]; s != nil {
		return s
	}
	service, method := splitMethod(fullMethod)
	s := &MethodSeries{
		typ: typ, service: service, method: method, vec: g.handled,
		started:  g.started.WithLabelValues(typ, service, method),
		received: g.received.WithLabelValues(typ, service, method),
		sent:     g.sent.WithLabelValues(typ, service, method),
		handling: g.handling.WithLabelValues(typ, service, method),
	}
	for c := range s.handled {
		s.handled[c] = g.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	g.methods[fullMethod] = s
	return s
}

// splitMethod splits /package.Service/Method.
func splitMethod(fullMethod string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return "unknown", "unknown"
	}
	return service, method
}

// methodType is the provider's grpc_type of a method.
func methodType(m grpc.MethodInfo) string {
	switch {
	case !m.IsClientStream && !m.IsServerStream:
		return "unary"
	case m.IsClientStream && !m.IsServerStream:
		return "client_stream"
	case !m.IsClientStream && m.IsServerStream:
		return "server_stream"
	}
	return "bidi_stream"
}
