// Package metrics exposes Portvakt's Prometheus metrics on a listener of
// their own, apart from the gRPC API: requests (and each gRPC method's
// calls and latency, grpc_server_*), policy denials, the token cache, the
// HSM, Maskinporten, the certificates, policy and TLS reloads, the audit log,
// and which build runs (portvakt_build_info). docs/observability.md lists
// them.
package metrics

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portvakt/portvakt/internal/buildinfo"
)

const namespace = "portvakt"

// Metrics are the daemon's metrics, in a registry of their own.
type Metrics struct {
	Registry *prometheus.Registry

	Requests           *prometheus.CounterVec   // method, client, code; count with CountRequest
	PolicyDenials      *prometheus.CounterVec   // client
	HSMSignSeconds     prometheus.Histogram     //
	HSMErrors          prometheus.Counter       //
	HSMUp              *prometheus.GaugeVec     // environment, hsm
	MaskinportenSecs   *prometheus.HistogramVec // environment
	MaskinportenErrors *prometheus.CounterVec   // environment, mp_code
	BreakerOpen        *prometheus.GaugeVec     // environment
	ClockOffset        *prometheus.GaugeVec     // environment
	CertNotAfter       *prometheus.GaugeVec     // environment
	CertExpiringSoon   *prometheus.GaugeVec     // environment
	SuccessorNotAfter  *prometheus.GaugeVec     // environment
	SuccessorTakeover  *prometheus.GaugeVec     // environment
	// Registered-key rotation (environments[].rotation).
	RegisteredKeyCreated *prometheus.GaugeVec   // environment
	RegisteredKeyExpiry  *prometheus.GaugeVec   // environment
	RotationNext         *prometheus.GaugeVec   // environment
	RotationFailures     *prometheus.CounterVec // environment
	RotationInProgress   *prometheus.GaugeVec   // environment
	PolicyReloads        *prometheus.CounterVec // result
	PolicyWatching       prometheus.Gauge       //
	TLSReloads           *prometheus.CounterVec // result
	TLSWatching          prometheus.Gauge       //
	TLSCertNotAfter      prometheus.Gauge       //
	AuditWriteSeconds    prometheus.Histogram   //
	AuditWriteFailures   prometheus.Counter     //
	AuditBroken          prometheus.Gauge       //
	AuditGaps            *prometheus.CounterVec // cause
	GRPCConnections      *prometheus.GaugeVec   // listener
	GRPCMaxConnections   *prometheus.GaugeVec   // listener
	GRPCEvicted          *prometheus.CounterVec // listener

	// GRPCServer is every gRPC server's calls by method and code, and
	// their latency by method (grpc_server_handling_seconds): its
	// interceptor goes on each server.
	GRPCServer *grpcprom.ServerMetrics

	// Tokens counts the tokens handed out, cached or fresh, by
	// environment and kind: own, delegated (consumer_org) or system_user
	// (an Altinn system user). Which consumer or customer is in the audit
	// log, not in a label: their number has no bound.
	Tokens *prometheus.CounterVec // environment, kind; count with CountToken

	requests *curried[requestLabels] // Requests' series, for CountRequest
	tokens   *curried[tokenLabels]   // Tokens' series, for CountToken
}

// New makes and registers the metrics, and the Go runtime's and process's.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{r}
	grpcServer := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latencyBuckets)))
	r.MustRegister(grpcServer)
	bi := buildinfo.Get()
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which build runs (what `portvakt version` prints).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion}},
		func() float64 { return 1 }))
	m := &Metrics{
		Registry:   r,
		GRPCServer: grpcServer,
		Requests: f.counterVec("requests_total",
			"gRPC calls by method, policy client (empty when not recognised) and status code.", "method", "client", "code"),
		PolicyDenials: f.counterVec("policy_denials_total",
			"Requests the policy denied, by client (empty when the caller matched no client).", "client"),
		HSMSignSeconds: f.histogram("hsm_sign_seconds",
			"Time the HSM took to sign a grant.", []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}),
		HSMErrors: f.counter("hsm_errors_total", "Failed HSM signatures."),
		HSMUp: f.gaugeVec("hsm_up",
			"1 while the HSM token holding the environment's key answers, else 0 (probed every hsm probe_interval).", "environment", "hsm"),
		BreakerOpen: f.gaugeVec("maskinporten_breaker_open",
			"1 while the environment's circuit breaker holds attempts at Maskinporten back (after failures in a row; cached tokens are still served), else 0.", "environment"),
		ClockOffset: f.gaugeVec("maskinporten_clock_offset_seconds",
			"Maskinporten's clock minus the host's, from the Date of its latest answer (positive: Maskinporten is ahead); "+
				"beyond maskinporten.clock_threshold grants follow Maskinporten's clock. Absent until Maskinporten answered.", "environment"),
		MaskinportenSecs: f.histogramVec("maskinporten_request_seconds",
			"Time a token request to Maskinporten took, each attempt counted.", prometheus.DefBuckets, "environment"),
		MaskinportenErrors: f.counterVec("maskinporten_errors_total",
			"Failed token requests, by environment and MP code (\"network\" when Maskinporten was not reached, \"http_<status>\" without a code).", "environment", "mp_code"),
		CertNotAfter: f.gaugeVec("certificate_not_after_timestamp_seconds",
			"When each environment's enterprise certificate expires (Unix time).", "environment"),
		CertExpiringSoon: f.gaugeVec("certificate_expiring_soon",
			"1 when the environment's certificate expires within the warning window and no successor is waiting to take over, else 0.", "environment"),
		SuccessorNotAfter: f.gaugeVec("certificate_successor_not_after_timestamp_seconds",
			"When the renewed certificate waiting to take over the environment's signing expires (Unix time); absent when none waits.", "environment"),
		SuccessorTakeover: f.gaugeVec("certificate_successor_takeover_timestamp_seconds",
			"When the renewed certificate takes over the environment's signing (Unix time); absent when none waits.", "environment"),
		RegisteredKeyCreated: f.gaugeVec("registered_key_created_timestamp_seconds",
			"When the registered key the environment signs with was made in the HSM (Unix time), so its age is time() minus this; absent for a key made before rotation.", "environment"),
		RegisteredKeyExpiry: f.gaugeVec("registered_key_expiry_timestamp_seconds",
			"When the registration of the key the environment signs with ends at Maskinporten (Unix time; MP-121 after); absent when not known.", "environment"),
		RotationNext: f.gaugeVec("key_rotation_next_timestamp_seconds",
			"When the environment's next automatic key rotation begins (Unix time); absent without rotation.auto or a known expiry.", "environment"),
		RotationFailures: f.counterVec("key_rotation_failures_total",
			"Failed steps of the environment's key rotation (each is tried again after a back-off; nothing in use is touched).", "environment"),
		RotationInProgress: f.gaugeVec("key_rotation_in_progress",
			"1 while a key rotation of the environment is under way (a new key on its way in, or an old one on its way out), else 0.", "environment"),
		PolicyReloads: f.counterVec("policy_reloads_total", "Policy reloads by result (ok or failed).", "result"),
		PolicyWatching: f.gauge("policy_watching",
			"1 while changes to the policy file are reloaded by themselves; 0 when the watch failed (SIGHUP still reloads)."),
		TLSReloads: f.counterVec("tls_reloads_total",
			"Reloads of the mutual-TLS listener's certificate, key and client CA (on a change to their files, or SIGHUP), by result (ok or failed: the files before stay in force).", "result"),
		TLSWatching: f.gauge("tls_watching",
			"1 while changes to the mutual-TLS listener's files are reloaded by themselves; 0 when the watch failed (SIGHUP still reloads)."),
		TLSCertNotAfter: f.gauge("tls_certificate_not_after_timestamp_seconds",
			"When the mutual-TLS listener's server certificate in force expires (Unix time)."),
		AuditWriteSeconds: f.histogram("audit_write_seconds",
			"Time to append (and sync) one audit record.", []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}),
		AuditWriteFailures: f.counter("audit_write_failures_total", "Audit records that could not be written (each failed a request)."),
		AuditBroken: f.gauge("audit_broken",
			"1 while the audit log takes no record, and so no token is issued: after a failed write or fsync until a new audit file is opened, "+
				"after the file was deleted, replaced, truncated or appended to by someone else until the daemon is restarted; else 0. The daemon's log says why."),
		AuditGaps: f.counterVec("audit_gaps_total",
			"Gap records written, by cause (write, fsync, deleted, replaced, truncated, appended): each opens a new audit file and names the records that may be lost.", "cause"),
		GRPCConnections: f.gaugeVec("grpc_connections",
			"Connections each gRPC listener (unix, tcp) holds open, handshaking or not.", "listener"),
		GRPCMaxConnections: f.gaugeVec("grpc_max_connections",
			"The cap on each listener's connections: grpc.max_connections, or lower when the file descriptor limit needs it.", "listener"),
		GRPCEvicted: f.counterVec("grpc_connections_evicted_total",
			"Connections closed because their listener was at its cap: each time the one that had read nothing for longest.", "listener"),
		Tokens: f.counterVec("tokens_total",
			"Tokens handed out (from the cache or fresh), by environment and kind: own, delegated (on behalf of a consumer_org) or system_user (an Altinn system user).", "environment", "kind"),
	}
	m.requests = newCurried[requestLabels](m.Requests)
	m.tokens = newCurried[tokenLabels](m.Tokens)
	// Both results of each reload exist at 0 from the start, for a rate or an
	// alert: increase() does not count a counter's first sample.
	m.PolicyReloads.WithLabelValues("ok")
	m.PolicyReloads.WithLabelValues("failed")
	m.TLSReloads.WithLabelValues("ok")
	m.TLSReloads.WithLabelValues("failed")
	return m
}

// latencyBuckets span a cached GetToken (about 100 µs) to a fetch that
// waits out Maskinporten's retries (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// CounterFunc registers a counter read at scrape time from state kept
// elsewhere (the token cache, the signers), so nothing counts twice.
func (m *Metrics) CounterFunc(name, help string, read func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, read))
}

// GaugeFunc registers a gauge read at scrape time.
func (m *Metrics) GaugeFunc(name, help string, read func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, read))
}

type factory struct{ r *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.r.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.r.MustRegister(h)
	return h
}
