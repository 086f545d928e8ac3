package daemon

import (
	"context"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/portvakt/portvakt/internal/buildinfo"
	"github.com/portvakt/portvakt/internal/tracing"
)

// tracingShutdownTimeout bounds the flush of the spans not yet exported
// at shutdown: a collector that is down delays the exit by no more.
const tracingShutdownTimeout = 5 * time.Second

// tracingState is the daemon's tracing: all zero when it is off.
type tracingState struct {
	provider trace.TracerProvider     // nil: off
	tracer   tracing.Tracer           // for the token service and the recorder
	own      *sdktrace.TracerProvider // the one the daemon started and shuts down
}

// startTracing sets up the tracer provider: the one the options give
// (tests: an in-memory exporter; the daemon does not own it), else the one
// the OTEL_* environment asks for, else none, and then nothing on the
// request path traces or costs anything.
func (d *Daemon) startTracing(opts Options) error {
	tp := opts.TracerProvider
	if tp == nil {
		settings, err := tracing.FromEnv(os.Getenv)
		if err != nil {
			return err
		}
		if !settings.Enabled {
			return nil
		}
		own, err := tracing.NewProvider(context.Background(), settings, tracing.Service{Version: buildinfo.Get().Version, Instance: d.cfg.Audit.Instance})
		if err != nil {
			return err
		}
		d.tracing.own, tp = own, own
		d.log.Info("tracing on", "protocol", settings.Protocol)
	}
	d.tracing.provider = tp
	d.tracing.tracer = tracing.NewTracer(tp)
	return nil
}

// tracingOption is the gRPC server's span for each call, from the
// caller's trace context when it sent one (W3C traceparent); none when
// tracing is off. Health checks are not traced: probes call them every
// few seconds and would bury the token calls.
func (d *Daemon) tracingOption() grpc.ServerOption {
	if d.tracing.provider == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(d.tracing.provider),
		otelgrpc.WithPropagators(tracing.Propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()), // the metrics are Prometheus's
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return info.FullMethodName != healthpb.Health_Check_FullMethodName && info.FullMethodName != healthpb.Health_Watch_FullMethodName
		}),
	))
}

// stopTracing flushes the spans not yet exported and stops the exporter
// the daemon started; last, after everything that makes spans.
func (d *Daemon) stopTracing() {
	if d.tracing.own == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := d.tracing.own.Shutdown(ctx); err != nil {
		d.log.Warn("spans not exported at shutdown", "error", err.Error())
	}
	d.tracing.own = nil
}
