package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portvakt/portvakt/internal/requestid"
)

// The attributes Portvakt puts on its spans. None holds a secret.
const (
	RequestID   = attribute.Key("portvakt.request_id")  // the call's id, as in its log line and audit records
	Environment = attribute.Key("portvakt.environment") // the Maskinporten environment
	Client      = attribute.Key("portvakt.client")      // the policy client the caller was recognised as
	Scopes      = attribute.Key("portvakt.scopes")      // the scopes asked for
	Decision    = attribute.Key("portvakt.decision")    // allow or deny
	Rules       = attribute.Key("portvakt.rules")       // the policy rules that decided
	CacheHit    = attribute.Key("portvakt.cache.hit")   // answered from the cache
	Outcome     = attribute.Key("portvakt.outcome")     // cached, issued, denied, or the failure's outcome (tokenservice.Outcome*)
	GrantJTI    = attribute.Key("portvakt.grant.jti")   // the grant's jti: which grant, not the grant
	KeyLabel    = attribute.Key("portvakt.hsm.key_label")
	AuditKind   = attribute.Key("portvakt.audit.kind")   // decision, signature, outcome
	AuditSynced = attribute.Key("portvakt.audit.synced") // waited for the disk
	MPCode      = attribute.Key("portvakt.maskinporten.mp_code")
	HTTPStatus  = attribute.Key("http.response.status_code")
	URL         = attribute.Key("url.full") // the token endpoint
)

// nonRecording is the span of tracing off, made once: an interface made
// from a struct on each call could allocate.
var nonRecording trace.Span = noop.Span{}

// instrumentation names the spans' tracer.
const instrumentation = "github.com/portvakt/portvakt"

// Tracer starts the spans of a request's steps. Its zero value, tracing
// off, starts none: Start hands ctx back as it was and a span that does
// nothing, so the cached token path allocates nothing more. Set
// attributes only when span.IsRecording(), for the same reason.
type Tracer struct{ tracer trace.Tracer }

// NewTracer is a Tracer on tp; nil tp is tracing off.
func NewTracer(tp trace.TracerProvider) Tracer {
	if tp == nil {
		return Tracer{}
	}
	return Tracer{tracer: tp.Tracer(instrumentation)}
}

// Start starts a span named name, a child of ctx's, carrying ctx's
// request id.
func (t Tracer) Start(ctx context.Context, name string) (context.Context, trace.Span) {
	if t.tracer == nil {
		return ctx, nonRecording
	}
	ctx, span := t.tracer.Start(ctx, name)
	if id := requestid.From(ctx); id != "" {
		span.SetAttributes(RequestID.String(id))
	}
	return ctx, span
}

// Span is ctx's span (the call's, say), to add attributes to; with tracing
// off the span that does nothing, without a look into ctx.
func (t Tracer) Span(ctx context.Context) trace.Span {
	if t.tracer == nil {
		return nonRecording
	}
	return trace.SpanFromContext(ctx)
}
