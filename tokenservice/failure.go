package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/selfservice"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// The outcomes a failed request is recorded with in the audit: one per
// class of failure, each with one gRPC code.
const (
	OutcomeInvalidRequest          = "invalid_request"          // InvalidArgument
	OutcomeMaskinportenRefused     = "maskinporten_refused"     // FailedPrecondition
	OutcomeMaskinportenUnavailable = "maskinporten_unavailable" // Unavailable
	OutcomeHSMUnavailable          = "hsm_unavailable"          // Unavailable
	OutcomeAuditUnavailable        = "audit_unavailable"        // Unavailable
	OutcomeShuttingDown            = "shutting_down"            // Unavailable
	OutcomeCanceled                = "canceled"                 // Canceled
	OutcomeDeadlineExceeded        = "deadline_exceeded"        // DeadlineExceeded
	OutcomeSelfServiceRefused      = "self_service_refused"     // FailedPrecondition
	OutcomeMisconfigured           = "misconfigured"            // FailedPrecondition
	OutcomeSelfServiceUnavailable  = "self_service_unavailable" // Unavailable
	OutcomeInternal                = "internal"                 // Internal: a bug
)

// Failure is what an error means: to the caller (a gRPC status with the
// details it can act on) and to the audit (an outcome). Classify is the
// one place errors are sorted; the recorder and the reply both use it, so
// they always agree.
type Failure struct {
	Code    codes.Code
	Outcome string
	// Message is the status message: it names fields, MP codes and
	// causes, never a secret or another client.
	Message string
	// RetryAfter, for Unavailable, is when to try again.
	RetryAfter time.Duration
	// Field, for InvalidArgument, is the request field at fault.
	Field string
	// Refusal, for FailedPrecondition, is Maskinporten's answer.
	Refusal *maskinporten.Error
}

// Default retry advice when the cause gave none: about the time an HSM
// reconnection or a Maskinporten blip takes.
const (
	retryUnavailable = time.Second
	retryBusy        = 200 * time.Millisecond
)

// Classify sorts err, which ended a request whose context is ctx. Only
// the caller's own context ending is DeadlineExceeded or Canceled: a
// timeout of the daemon's own (one attempt at Maskinporten, a fetch's
// budget) is Maskinporten or the HSM being too slow, so Unavailable.
func Classify(ctx context.Context, err error) Failure {
	var field *fieldError
	var tooShort *tokencache.TooShortError
	var refusal *maskinporten.Error
	var apiRefusal *selfservice.RefusedError
	retry, advised := tokencache.RetryAfter(err)
	unavailable := func(outcome, what string, fallback time.Duration) Failure {
		if !advised {
			retry = fallback
		}
		return Failure{Code: codes.Unavailable, Outcome: outcome, Message: what + "; retry with back-off: " + err.Error(), RetryAfter: retry}
	}
	switch {
	case errors.As(err, &field):
		return Failure{Code: codes.InvalidArgument, Outcome: OutcomeInvalidRequest, Message: field.Error(), Field: field.field}
	case errors.As(err, &tooShort):
		return Failure{Code: codes.InvalidArgument, Outcome: OutcomeInvalidRequest, Message: "min_validity: " + tooShort.Error(), Field: "min_validity"}
	case errors.Is(err, maskinporten.ErrInvalidRequest):
		return Failure{Code: codes.InvalidArgument, Outcome: OutcomeInvalidRequest, Message: err.Error()}
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// The caller left or ran out of time; what it was waiting for
		// goes on for others.
		code, outcome := codes.Canceled, OutcomeCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code, outcome = codes.DeadlineExceeded, OutcomeDeadlineExceeded
		}
		return Failure{Code: code, Outcome: outcome, Message: err.Error()}
	case errors.Is(err, tokencache.ErrClosed):
		return unavailable(OutcomeShuttingDown, "the daemon is shutting down", retryUnavailable)
	case errors.Is(err, ErrNotRecorded):
		return unavailable(OutcomeAuditUnavailable, "no token was issued because the request could not be recorded in the audit log", retryUnavailable)
	case errors.Is(err, signer.ErrBusy):
		return unavailable(OutcomeHSMUnavailable, "the HSM is busy", retryBusy)
	case errors.Is(err, signer.ErrUnavailable):
		return unavailable(OutcomeHSMUnavailable, "the HSM is unavailable", retryUnavailable)
	case errors.Is(err, tokencache.ErrCircuitOpen), maskinporten.IsTemporary(err),
		errors.Is(err, maskinporten.ErrDiscovery), errors.Is(err, maskinporten.ErrBadResponse):
		return unavailable(OutcomeMaskinportenUnavailable, "Maskinporten is unavailable", retryUnavailable)
	case errors.As(err, &refusal):
		return Failure{Code: codes.FailedPrecondition, Outcome: OutcomeMaskinportenRefused, Message: refusal.Error(), Refusal: refusal}
	case errors.Is(err, ErrNoSelfServiceKey):
		return Failure{Code: codes.FailedPrecondition, Outcome: OutcomeMisconfigured, Message: err.Error()}
	case errors.Is(err, selfservice.ErrUnavailable):
		return unavailable(OutcomeSelfServiceUnavailable, "Digdir's self-service API is unavailable", retryUnavailable)
	case errors.As(err, &apiRefusal):
		return Failure{Code: codes.FailedPrecondition, Outcome: OutcomeSelfServiceRefused, Message: apiRefusal.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		// A budget of the daemon's own ran out (the caller's did not).
		return unavailable(OutcomeMaskinportenUnavailable, "no token could be had in time", retryUnavailable)
	default:
		return Failure{Code: codes.Internal, Outcome: OutcomeInternal, Message: "internal error: " + err.Error()}
	}
}

// Status is the failure as the caller gets it: RetryInfo with an
// Unavailable, BadRequest naming the field with an InvalidArgument,
// Maskinporten's codes in ErrorInfo with a FailedPrecondition.
func (f Failure) Status() *status.Status {
	st := status.New(f.Code, f.Message)
	switch {
	case f.Code == codes.Unavailable && f.RetryAfter > 0:
		return withDetail(st, &errdetails.RetryInfo{RetryDelay: durationpb.New(f.RetryAfter)})
	case f.Code == codes.InvalidArgument && f.Field != "":
		return withDetail(st, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: f.Field, Description: f.Message}}})
	case f.Refusal != nil:
		e := f.Refusal
		return withDetail(st, &errdetails.ErrorInfo{
			Reason: strings.ToUpper(e.Code),
			Domain: "maskinporten.no",
			Metadata: map[string]string{
				"mp_code":     e.MPCode,
				"trace_id":    e.TraceID,
				"http_status": strconv.Itoa(e.Status),
			},
		})
	}
	return st
}

func withDetail(st *status.Status, detail protoadapt.MessageV1) *status.Status {
	detailed, err := st.WithDetails(detail)
	if err != nil {
		return st // cannot happen with the errdetails types
	}
	return detailed
}

// toStatus is the error as the caller of ctx gets it.
func toStatus(ctx context.Context, err error) error {
	f := Classify(ctx, err)
	traceFailure(ctx, f.Outcome)
	return f.Status().Err()
}

// permissionDenied says why the caller was refused, in terms of its own
// request only: the reason never describes another client's rights.
func permissionDenied(d policy.Decision) error {
	return status.Error(codes.PermissionDenied, "denied by policy: "+d.Reason)
}

// unrecorded fails a request whose decision could not be put on record.
func (s *Service) unrecorded(ctx context.Context, err error) error {
	s.log.ErrorContext(ctx, "audit record could not be written; request refused", "error", err.Error())
	return toStatus(ctx, fmt.Errorf("%w: %w", ErrNotRecorded, err))
}

// rateLimitedStatus is ResourceExhausted with the wait one call's worth of
// the limit takes.
func rateLimitedStatus(msg string, perSecond float64) error {
	st := status.New(codes.ResourceExhausted, msg)
	if perSecond > 0 {
		st = withDetail(st, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(float64(time.Second) / perSecond))})
	}
	return st.Err()
}
