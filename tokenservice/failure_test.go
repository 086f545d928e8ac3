package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// TestClassify: each kind of failure reaches the caller as the code it can
// act on, with the detail that says how, and the audit with one outcome.
func TestClassify(t *testing.T) {
	refusal := maskinporten.ParseError(400, http.Header{}, []byte(`{"error":"invalid_scope","error_description":"scope not granted (MP-200) [trace_id: 0123456789abcdef]"}`))
	// A timeout of the daemon's own: one attempt at Maskinporten, or a
	// fetch's budget, while the caller still has time.
	ownTimeout := fmt.Errorf("after 2 attempts: %w", context.DeadlineExceeded)
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		outcome string
		msg     string
		field   string
	}{
		{"bad field", &fieldError{"consumer_org", "bad check digit"}, codes.InvalidArgument, OutcomeInvalidRequest, "consumer_org: bad check digit", "consumer_org"},
		{"min validity never met", &tokencache.TooShortError{Asked: 119 * time.Second, Longest: time.Minute}, codes.InvalidArgument, OutcomeInvalidRequest, "min_validity", "min_validity"},
		{"HSM away", fmt.Errorf("signing: %w", signer.ErrUnavailable), codes.Unavailable, OutcomeHSMUnavailable, "HSM is unavailable", ""},
		{"HSM busy", fmt.Errorf("signing: %w", signer.ErrBusy), codes.Unavailable, OutcomeHSMUnavailable, "busy", ""},
		{"audit broken", fmt.Errorf("%w: disk full", ErrNotRecorded), codes.Unavailable, OutcomeAuditUnavailable, "audit log", ""},
		{"Maskinporten 5xx", maskinporten.ParseError(503, http.Header{}, nil), codes.Unavailable, OutcomeMaskinportenUnavailable, "Maskinporten is unavailable", ""},
		{"discovery failed", fmt.Errorf("environment test: %w: no endpoint", maskinporten.ErrDiscovery), codes.Unavailable, OutcomeMaskinportenUnavailable, "Maskinporten", ""},
		{"breaker open", fmt.Errorf("test: %w", tokencache.ErrCircuitOpen), codes.Unavailable, OutcomeMaskinportenUnavailable, "Maskinporten", ""},
		{"shutting down", tokencache.ErrClosed, codes.Unavailable, OutcomeShuttingDown, "shutting down", ""},
		{"Maskinporten too slow", ownTimeout, codes.Unavailable, OutcomeMaskinportenUnavailable, "in time", ""},
		{"Maskinporten refuses", refusal, codes.FailedPrecondition, OutcomeMaskinportenRefused, "MP-200", ""},
		{"unknown", errors.New("boom"), codes.Internal, OutcomeInternal, "boom", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Classify(t.Context(), tt.err)
			if f.Code != tt.code || f.Outcome != tt.outcome || !strings.Contains(f.Message, tt.msg) {
				t.Fatalf("Classify = %v %s %q, want %v %s saying %q", f.Code, f.Outcome, f.Message, tt.code, tt.outcome, tt.msg)
			}
			st := f.Status()
			var retry *errdetails.RetryInfo
			var bad *errdetails.BadRequest
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.RetryInfo:
					retry = d
				case *errdetails.BadRequest:
					bad = d
				case *errdetails.ErrorInfo:
					info = d
				}
			}
			if (tt.code == codes.Unavailable) != (retry != nil && retry.GetRetryDelay().AsDuration() > 0) {
				t.Errorf("RetryInfo = %v; every UNAVAILABLE, and only it, says when to retry", retry)
			}
			if tt.field != "" && (bad == nil || len(bad.GetFieldViolations()) != 1 || bad.GetFieldViolations()[0].GetField() != tt.field) {
				t.Errorf("BadRequest = %v, want a violation of %s", bad, tt.field)
			}
			if tt.code == codes.FailedPrecondition && (info == nil || info.GetMetadata()["mp_code"] != "MP-200") {
				t.Errorf("ErrorInfo = %v, want Maskinporten's MP code", info)
			}
		})
	}
}

// TestClassifyCallerContext: only the caller's own context ending is
// DEADLINE_EXCEEDED or CANCELLED.
func TestClassifyCallerContext(t *testing.T) {
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if f := Classify(expired, fmt.Errorf("waiting for a token: %w", expired.Err())); f.Code != codes.DeadlineExceeded || f.Outcome != OutcomeDeadlineExceeded {
		t.Errorf("the caller's deadline: %v %s", f.Code, f.Outcome)
	}
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if f := Classify(gone, fmt.Errorf("waiting for a token: %w", gone.Err())); f.Code != codes.Canceled {
		t.Errorf("the caller gone: %v", f.Code)
	}
	// The caller's context is fine: a deadline inside is the daemon's own.
	if f := Classify(t.Context(), fmt.Errorf("post: %w", context.DeadlineExceeded)); f.Code != codes.Unavailable {
		t.Errorf("an attempt's own timeout: %v, want UNAVAILABLE", f.Code)
	}
}
