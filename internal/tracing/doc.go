// Package tracing is Portvakt's OpenTelemetry tracing: whether it is on
// (the standard OTEL_* environment variables decide; off unless asked
// for), the tracer provider exporting over OTLP, and the Tracer the
// request's flow starts its spans with, which costs nothing when tracing
// is off.
//
// What a span may hold: names, the request id, environments, clients,
// scopes, outcomes, MP codes, a grant's jti. Never a grant, a token or a
// PIN: the attribute keys below are the only ones the flow sets.
package tracing
