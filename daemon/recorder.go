package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/internal/tracing"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/metrics"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
	"github.com/portvakt/portvakt/tokenservice"
)

// recorder puts every decision, key use and outcome on the audit log, and
// counts them. The audit record carries the same request id as the log
// line of the call.
//
// What one caller can make it write is bounded: a cached token is one
// record, and denials and rate-limited calls repeated by the same caller
// are counted, one record a second (see coalescer), rather than written
// one by one. No record is over maxRecordBytes.
type recorder struct {
	audit  *audit.Writer
	m      *metrics.Metrics
	log    *slog.Logger
	tracer tracing.Tracer

	denials *coalescer // identical denials
	limited *coalescer // rate-limited calls, by caller
}

// maxRecordBytes bounds a record's line in the log (the audit Writer
// checks it on the line it encodes anyway). The token service bounds what
// a caller sends so that no record comes near it; this check holds
// whatever else changes: a record over it is refused, and with it the
// request it was for, rather than written.
const maxRecordBytes = 4 << 10

// maxErrorBytes bounds the error message an outcome records: messages
// name a cause, and Maskinporten's part of them is bounded already.
const maxErrorBytes = 1 << 10

func newRecorder(w *audit.Writer, m *metrics.Metrics, log *slog.Logger, tracer tracing.Tracer) *recorder {
	r := &recorder{audit: w, m: m, log: log, tracer: tracer}
	// Every cause exists at 0 from the start, for a rate or an alert.
	for _, cause := range []string{audit.CauseWrite, audit.CauseFsync, audit.CauseDeleted, audit.CauseReplaced, audit.CauseTruncated, audit.CauseAppended} {
		m.AuditGaps.WithLabelValues(cause)
	}
	r.denials = newCoalescer(r.appendUnsynced, log)
	r.limited = newCoalescer(r.appendUnsynced, log)
	return r
}

// close writes the counts not yet written. It must be called before the
// audit log is closed.
func (r *recorder) close() {
	r.denials.close()
	r.limited.close()
}

// RateLimited records calls refused by a rate limit, before any decision,
// counted per caller and written once a second: a flooding caller makes
// most of its calls over its limit, and writing each would let it fill the
// disk, while a count shows no less who was limited and how hard.
func (r *recorder) RateLimited(ctx context.Context, l tokenservice.RateLimited) error {
	method, _ := grpc.Method(ctx)
	rec := audit.Record{
		Kind:       audit.KindOutcome,
		RequestID:  requestid.From(ctx),
		Transport:  l.Caller.Transport,
		Identities: l.Caller.Identities,
		Client:     l.Client,
		Method:     method,
		Outcome:    "rate_limited",
		Reason:     fmt.Sprintf("client %q is over its rate_limit of %g calls per second (burst %d)", l.Client, l.Limit.PerSecond, l.Limit.Burst),
	}
	if l.Client == "" {
		rec.Reason = fmt.Sprintf("no client claims the caller, and the rate limit all such callers share (%g calls per second, burst %d) is used up", l.Limit.PerSecond, l.Limit.Burst)
	}
	return r.limited.add(rec, func(rec audit.Record) audit.Record {
		// Too many callers at once to count each: count them by client.
		rec.Identities, rec.Transport = nil, ""
		rec.Reason += fmt.Sprintf("; counted for all its callers together, as more than %d were being counted", maxRuns)
		return rec
	})
}

// Decision records a decision; for a request answered from the cache, the
// one record of the request, with the token's grant and expiry. A denial
// repeated exactly is counted rather than written again (see coalescer).
func (r *recorder) Decision(ctx context.Context, d *tokenservice.Decision) error {
	if !d.Decision.Allowed {
		return r.denial(ctx, d)
	}
	rec := newRecord()
	defer freeRecord(rec)
	r.decisionRecord(ctx, rec, d, "allow")
	if tok := d.Cached; tok != nil {
		rec.Outcome = "cached"
		rec.GrantJTI = tok.GrantJTI
		expiry := tok.ExpiresAt.UTC()
		rec.TokenExpiry = &expiry
	}
	err := r.traced(ctx, rec, false)
	if err == nil && d.Cached != nil {
		r.countToken(d.Request) // on record, so handed out
	}
	return err
}

// denial records a denied request, or counts it in a run of identical
// ones.
func (r *recorder) denial(ctx context.Context, d *tokenservice.Decision) error {
	r.m.PolicyDenials.WithLabelValues(d.Decision.Client).Inc()
	var rec audit.Record
	r.decisionRecord(ctx, &rec, d, "deny")
	return r.denials.add(rec, nil)
}

// decisionRecord fills rec with what a decision record says.
func (r *recorder) decisionRecord(ctx context.Context, rec *audit.Record, d *tokenservice.Decision, decision string) {
	r.fillBase(ctx, rec, audit.KindDecision, &d.Caller, &d.Request)
	rec.Client = d.Decision.Client
	rec.Decision = decision
	rec.Rule = strings.Join(d.Decision.Rules, ",")
	rec.Reason = d.Decision.Reason
}

func (r *recorder) KeyChange(ctx context.Context, k tokenservice.KeyChange) error {
	rec := r.base(ctx, audit.KindKey, k.Caller, tokencache.Key{Environment: k.Environment})
	rec.Client, rec.KeyLabel, rec.KID, rec.Outcome = k.Client, k.KeyLabel, k.KID, k.Step
	if k.Signer != nil {
		rec.CertSHA256 = fingerprint(k.Signer)
	}
	rec.Reason = k.Reason
	if k.Err != nil {
		rec.Error = cut(k.Err.Error(), maxErrorBytes)
	}
	return r.traced(ctx, &rec, true) // a key change is durably on record, as a key use
}

func (r *recorder) KeyUse(ctx context.Context, k tokenservice.KeyUse) error {
	caller, _ := identity.FromContext(ctx) // the caller whose miss caused the fetch
	rec := r.base(ctx, audit.KindSignature, caller, k.Key)
	rec.Client = requestid.ClientFrom(ctx)
	rec.GrantJTI = k.Grant.JTI
	rec.KeyLabel = k.Signer.KeyLabel()
	rec.KID = k.KID
	rec.CertSHA256 = fingerprint(k.Signer)
	return r.traced(ctx, &rec, true)
}

func (r *recorder) Outcome(ctx context.Context, o tokenservice.Outcome) error {
	rec := r.base(ctx, audit.KindOutcome, o.Caller, o.Request)
	rec.Client = o.Decision.Client
	if o.Token != nil {
		rec.Outcome = "issued"
		rec.GrantJTI = o.Token.GrantJTI
		expiry := o.Token.ExpiresAt.UTC()
		rec.TokenExpiry = &expiry
	} else {
		f := tokenservice.Classify(ctx, o.Err)
		rec.Outcome = f.Outcome
		if f.Refusal != nil {
			rec.MPCode = f.Refusal.MPCode
		}
		// Errors name fields, MP codes and causes; never a grant or token.
		rec.Error = cut(o.Err.Error(), maxErrorBytes)
	}
	err := r.traced(ctx, &rec, false)
	if err == nil && o.Token != nil && !o.Discarded {
		r.countToken(o.Request) // on record, so handed out
	}
	if err != nil && o.Token == nil {
		// The failure itself is already answered; say it could not be kept.
		r.log.ErrorContext(ctx, "audit record of a failed request could not be written", "request_id", rec.RequestID, "error", err.Error())
	}
	return err
}

// countToken counts a token handed out by its kind: a label of three
// values, never the consumer or customer itself.
func (r *recorder) countToken(key tokencache.Key) {
	kind := "own"
	switch {
	case key.SystemUserOrg != "":
		kind = "system_user"
	case key.ConsumerOrg != "":
		kind = "delegated"
	}
	r.m.CountToken(key.Environment, kind)
}

// fillBase fills what every record of a request has into rec.
func (r *recorder) fillBase(ctx context.Context, rec *audit.Record, kind string, caller *identity.Caller, key *tokencache.Key) {
	method, _ := grpc.Method(ctx)
	rec.Kind = kind
	rec.RequestID = requestid.From(ctx)
	rec.Transport = caller.Transport
	rec.Identities = caller.Identities
	rec.Method = method
	rec.Environment = key.Environment
	rec.Scopes = key.ScopeList()
	rec.ConsumerOrg = key.ConsumerOrg
	rec.Resource = key.Resource
	rec.SystemUserOrg = key.SystemUserOrg
	rec.SystemUserRef = key.SystemUserRef
}

// base is fillBase's record, for the records written less often than a
// cached token's (keys, signatures, outcomes of fetches).
func (r *recorder) base(ctx context.Context, kind string, caller identity.Caller, key tokencache.Key) audit.Record {
	var rec audit.Record
	r.fillBase(ctx, &rec, kind, &caller, &key)
	return rec
}

// recordPool holds the records of cached calls while they are written:
// half a kilobyte, which on the request's goroutine (with the copies a
// value makes down the call) took a cached GetToken past 8 KiB of stack,
// so that a call on a goroutine of 8 KiB (one beyond the gRPC workers,
// say) copied its stack to one of 16 KiB on the way to the audit write.
// With the record here, the decision on the heap (tokenservice.GetToken)
// and the rare paths of the audit write in functions of their own, the
// deepest point of a cached call, the audit file's stat, is at about
// 5.8 KiB (measured from a goroutine dump, GOTRACEBACK=system, taken
// there). make bench-e2e's 1000-caller round showed it: the daemon's CPU
// per call went from 128-134 µs to 92-107 µs. The Writer copies the
// record it is given, so it goes back to the pool once written.
var recordPool = sync.Pool{New: func() any { return new(audit.Record) }}

func newRecord() *audit.Record { return recordPool.Get().(*audit.Record) }

func freeRecord(rec *audit.Record) {
	*rec = audit.Record{}
	recordPool.Put(rec)
}

// traced writes a request's record in a span of the request's, synced or
// not (see appendUnsynced). With tracing off the span is the one that does
// nothing, made once: no allocation, no attribute. The records the
// coalescer writes later, for many requests at once, have no span.
func (r *recorder) traced(ctx context.Context, rec *audit.Record, synced bool) error {
	_, span := r.tracer.Start(ctx, spanAudit)
	err := r.write(rec, synced)
	if span.IsRecording() {
		describeAuditSpan(span, rec, synced, err)
	}
	span.End()
	return err
}

// describeAuditSpan says which record a span wrote: never what it vouches
// for (a grant's jti, not the grant; no token). It is a function of its
// own so that its attributes take no room on the request's stack when
// tracing is off.
func describeAuditSpan(span trace.Span, rec *audit.Record, synced bool, err error) {
	span.SetAttributes(tracing.AuditKind.String(rec.Kind), tracing.AuditSynced.Bool(synced),
		tracing.Environment.String(rec.Environment), tracing.Client.String(rec.Client))
	if rec.Outcome != "" {
		span.SetAttributes(tracing.Outcome.String(rec.Outcome))
	}
	if rec.GrantJTI != "" {
		span.SetAttributes(tracing.GrantJTI.String(rec.GrantJTI))
	}
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
}

// spanAudit is the span of one audit record's write.
const spanAudit = "audit.write"

// appendUnsynced writes a decision or outcome record: in the kernel (so
// it survives the daemon being killed) but not waited for on disk, which
// keeps fsync off the cached token path. Its error fails the request. A
// signature record is synced: a key use is durably on record before the
// grant leaves (the fsync also flushes the unsynced records before it).
func (r *recorder) appendUnsynced(rec audit.Record) error {
	return r.write(&rec, false)
}

// write puts rec on the log and waits until it is written (and synced,
// when synced): with the records of other requests at the same time, in
// one write (audit.Writer.Put). The record is not wanted back. It is
// passed by pointer down to the Writer, which copies it once: copies of
// half a kilobyte in each frame would grow the request goroutine's stack.
func (r *recorder) write(rec *audit.Record, synced bool) error {
	start := time.Now()
	err := r.audit.Put(rec, synced)
	r.m.AuditWriteSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		r.m.AuditWriteFailures.Inc()
		return fmt.Errorf("writing the audit record: %w", err)
	}
	return nil
}

// cut shortens s to at most n bytes, on a character boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// fingerprint is the SHA-256 of the key's certificate; "" for a key
// registered by kid alone, which has none (the record's environment and
// key label name it).
func fingerprint(s *signer.Signer) string {
	cert := s.Certificate()
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// observeMaskinporten turns token request attempts into metrics. The
// error series of every environment exist from the start at 0, for each
// MP code Maskinporten documents and for "network": a rate or an alert on
// them works before the first failure. ("http_<status>", an answer with
// no code, is made when it first comes.)
func observeMaskinporten(m *metrics.Metrics, envs []*tokenservice.Environment) func(env string, a maskinporten.Attempt) {
	for _, e := range envs {
		m.MaskinportenSecs.WithLabelValues(e.Config.Name)
		for _, code := range append(maskinporten.Codes(), codeNetwork) {
			m.MaskinportenErrors.WithLabelValues(e.Config.Name, code)
		}
	}
	return func(env string, a maskinporten.Attempt) {
		m.MaskinportenSecs.WithLabelValues(env).Observe(a.Duration().Seconds())
		if a.Err == nil {
			return
		}
		code := a.MPCode
		switch {
		case code != "":
		case a.Status == 0:
			code = codeNetwork
		default:
			code = fmt.Sprintf("http_%d", a.Status)
		}
		m.MaskinportenErrors.WithLabelValues(env, code).Inc()
	}
}

// codeNetwork is the mp_code of a token request that got no answer.
const codeNetwork = "network"
