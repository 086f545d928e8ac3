package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// toStatus maps an error to what the caller can act on: fix the request
// (InvalidArgument), stop asking (FailedPrecondition: Maskinporten
// refused), or retry later (Unavailable). Messages name no other client
// and carry no secret.
func toStatus(err error) error {
	var field *fieldError
	var mpErr *maskinporten.Error
	switch {
	case errors.As(err, &field):
		return status.Error(codes.InvalidArgument, field.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, ErrNotRecorded):
		return status.Error(codes.Unavailable, "no token was issued because the request could not be recorded in the audit log: "+err.Error())
	case errors.Is(err, signer.ErrBusy):
		return status.Error(codes.Unavailable, "the HSM is busy; retry with back-off: "+err.Error())
	case errors.Is(err, signer.ErrUnavailable):
		return status.Error(codes.Unavailable, "the HSM is unavailable; retry with back-off: "+err.Error())
	case maskinporten.IsTemporary(err):
		return status.Error(codes.Unavailable, "Maskinporten is unavailable; retry with back-off: "+err.Error())
	case errors.As(err, &mpErr):
		return maskinportenRefusal(mpErr)
	case errors.Is(err, tokencache.ErrTooShort):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, maskinporten.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// permissionDenied says why the caller was refused, in terms of its own
// request only: the reason never describes another client's rights.
func permissionDenied(d policy.Decision) error {
	return status.Error(codes.PermissionDenied, "denied by policy: "+d.Reason)
}

// unrecorded fails a request whose decision could not be put on record.
func (s *Service) unrecorded(ctx context.Context, err error) error {
	s.log.ErrorContext(ctx, "audit record could not be written; request refused", "error", err.Error())
	return status.Error(codes.Unavailable, fmt.Sprintf("the request could not be recorded in the audit log, so no token is issued: %v", err))
}

// maskinportenRefusal carries Maskinporten's codes as an ErrorInfo detail,
// so that callers can act on the MP code without parsing the message.
func maskinportenRefusal(e *maskinporten.Error) error {
	st := status.New(codes.FailedPrecondition, e.Error())
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: strings.ToUpper(e.Code),
		Domain: "maskinporten.no",
		Metadata: map[string]string{
			"mp_code":     e.MPCode,
			"trace_id":    e.TraceID,
			"http_status": strconv.Itoa(e.Status),
		},
	})
	if err != nil {
		return st.Err()
	}
	return detailed.Err()
}
