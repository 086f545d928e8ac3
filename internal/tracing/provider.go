package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ServiceName is the service.name of Portvakt's spans unless
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says
// otherwise.
const ServiceName = "portvakt"

// Propagator reads the caller's trace from incoming gRPC metadata: W3C
// tracecontext (traceparent, tracestate).
var Propagator = propagation.TraceContext{}

// Service describes the running daemon in the resource of its spans.
type Service struct {
	Version  string // service.version
	Instance string // service.instance.id; "" for none
}

// NewProvider starts the tracer provider settings ask for: an OTLP
// exporter (gRPC or HTTP) behind a batching span processor, sampling per
// OTEL_TRACES_SAMPLER (parent-based, always on, by default). The exporter
// connects lazily: a collector that is down costs dropped spans, never a
// refused start or a slower request. Shut it down to flush.
func NewProvider(ctx context.Context, s Settings, svc Service) (*sdktrace.TracerProvider, error) {
	if !s.Enabled {
		return nil, fmt.Errorf("tracing is off")
	}
	var (
		exporter sdktrace.SpanExporter
		err      error
	)
	switch s.Protocol {
	case ProtocolHTTP:
		exporter, err = otlptracehttp.New(ctx)
	default:
		exporter, err = otlptracegrpc.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (%s): %w", s.Protocol, err)
	}
	res, err := newResource(ctx, svc)
	if err != nil {
		_ = exporter.Shutdown(ctx)
		return nil, err
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)), nil
}

// newResource is the daemon's resource: service name, version and
// instance, then what OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say,
// which win.
func newResource(ctx context.Context, svc Service) (*resource.Resource, error) {
	opts := []resource.Option{
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(svc.Version)),
	}
	if svc.Instance != "" {
		opts = append(opts, resource.WithAttributes(semconv.ServiceInstanceID(svc.Instance)))
	}
	opts = append(opts, resource.WithFromEnv()) // last: the operator's word wins
	res, err := resource.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("trace resource (is OTEL_RESOURCE_ATTRIBUTES well formed?): %w", err)
	}
	return res, nil
}
