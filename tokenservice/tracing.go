package tokenservice

import (
	"context"
	"strings"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portvakt/portvakt/internal/tracing"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// The spans gettoken.go starts, each a child of the call's span. Their
// attributes are set here, only while a span records: with tracing off
// nothing is built.
const (
	spanPolicy = "policy.decide"
	spanCache  = "tokencache.lookup"
	spanSign   = "hsm.sign"
	spanPost   = "maskinporten.post"
)

// The outcomes of the calls that did not fail, on the call's span; a
// failure's is its Failure.Outcome.
const (
	outcomeCached      = "cached"
	outcomeIssued      = "issued"
	outcomeDenied      = "denied"
	outcomeRateLimited = "rate_limited"
)

// traceRequest puts what was asked on the call's span.
func (s *Service) traceRequest(ctx context.Context, key tokencache.Key) {
	if span := s.tracer.Span(ctx); span.IsRecording() {
		span.SetAttributes(tracing.Environment.String(key.Environment), tracing.Scopes.StringSlice(key.ScopeList()))
	}
}

// traceOutcome puts how the call ended on the call's span.
func (s *Service) traceOutcome(ctx context.Context, outcome string) {
	if span := s.tracer.Span(ctx); span.IsRecording() {
		span.SetAttributes(tracing.Outcome.String(outcome))
	}
}

// traceFailure puts a failed call's outcome on its span. Failures are
// off the cached path, so it looks for the span whether tracing is on or
// not.
func traceFailure(ctx context.Context, outcome string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(tracing.Outcome.String(outcome))
	}
}

// endDecide ends the policy's span with its decision.
func endDecide(span trace.Span, key tokencache.Key, d policy.Decision) {
	if span.IsRecording() {
		decision := "deny"
		if d.Allowed {
			decision = "allow"
		}
		span.SetAttributes(tracing.Environment.String(key.Environment), tracing.Scopes.StringSlice(key.ScopeList()),
			tracing.Client.String(d.Client), tracing.Decision.String(decision), tracing.Rules.String(strings.Join(d.Rules, ",")))
	}
	span.End()
}

// endLookup ends the cache lookup's span: a hit or not.
func endLookup(span trace.Span, key tokencache.Key, hit bool, err error) {
	if span.IsRecording() {
		span.SetAttributes(tracing.Environment.String(key.Environment), tracing.CacheHit.Bool(hit))
		failed(span, err)
	}
	span.End()
}

// endSign ends the HSM signature's span, naming the grant by its jti.
func endSign(span trace.Span, env *Environment, key *signer.Signer, grant maskinporten.Grant, err error) {
	if span.IsRecording() {
		span.SetAttributes(tracing.Environment.String(env.Config.Name))
		if key != nil {
			span.SetAttributes(tracing.KeyLabel.String(key.KeyLabel()))
		}
		if err == nil {
			span.SetAttributes(tracing.GrantJTI.String(grant.JTI))
		}
		failed(span, err)
	}
	span.End()
}

// endPost ends the token request's span with Maskinporten's answer.
func endPost(span trace.Span, env *Environment, endpoint string, grant maskinporten.Grant, a maskinporten.Attempt, err error) {
	if span.IsRecording() {
		span.SetAttributes(tracing.Environment.String(env.Config.Name), tracing.URL.String(endpoint), tracing.GrantJTI.String(grant.JTI))
		if a.Status != 0 {
			span.SetAttributes(tracing.HTTPStatus.Int(a.Status))
		}
		if a.MPCode != "" {
			span.SetAttributes(tracing.MPCode.String(a.MPCode))
		}
		failed(span, err)
	}
	span.End()
}

// failed marks a span failed with err, whose message names fields, MP
// codes and causes, never a grant or token (as in the audit).
func failed(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
}
