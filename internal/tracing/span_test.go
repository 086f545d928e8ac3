package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/portvakt/portvakt/internal/requestid"
)

// TestTracerOffAllocatesNothing: with tracing off a step's span, with its
// attributes guarded as the flow guards them, costs no allocation, and
// hands the context back as it was.
func TestTracerOffAllocatesNothing(t *testing.T) {
	ctx, _ := requestid.New(context.Background())
	var off Tracer
	allocs := testing.AllocsPerRun(100, func() {
		got, span := off.Start(ctx, "step")
		if got != ctx {
			t.Fatal("the context changed")
		}
		if span.IsRecording() {
			span.SetAttributes(Environment.String("sim"), Scopes.StringSlice([]string{"a", "b"}))
		}
		span.End()
		if off.Span(ctx).IsRecording() {
			t.Fatal("the call's span records with tracing off")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per span with tracing off, want 0", allocs)
	}
}

// TestTracerOnCarriesTheRequestID: each span has the call's request id.
func TestTracerOnCarriesTheRequestID(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, call := requestid.New(context.Background())
	_, span := NewTracer(tp).Start(ctx, "step")
	span.End()
	spans := exporter.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	var got string
	for _, a := range spans[0].Attributes {
		if a.Key == RequestID {
			got = a.Value.AsString()
		}
	}
	if got != call.ID {
		t.Errorf("request id %q, want %q", got, call.ID)
	}
}
