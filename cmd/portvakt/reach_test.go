package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portvakt/portvakt/client"
)

// TestExplainCallError: each status the daemon answers with becomes a
// sentence holding its details, and the exit status of its kind.
func TestExplainCallError(t *testing.T) {
	withDetail := func(code codes.Code, msg string, d protoadapt.MessageV1) error {
		st, err := status.New(code, msg).WithDetails(d)
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name   string
		err    error
		want   []string
		status int
	}{
		{"denied", status.Error(codes.PermissionDenied, "denied by policy: no rule"), []string{"the daemon refused the request: denied by policy: no rule"}, exitDenied},
		{"a field", withDetail(codes.InvalidArgument, "bad request", &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "scopes", Description: "empty"}}}),
			[]string{"the daemon found the request invalid: bad request (field scopes: empty)"}, exitUsage},
		{"Maskinporten's codes", withDetail(codes.FailedPrecondition, "refused", &errdetails.ErrorInfo{Reason: "INVALID_CLIENT", Domain: "maskinporten.no",
			Metadata: map[string]string{"mp_code": "MP-100", "trace_id": "abc123", "http_status": "401"}}),
			[]string{"Maskinporten refused the grant: refused (error invalid_client, mp_code MP-100, http_status 401, trace_id abc123)"}, exitFailure},
		{"when to come back", withDetail(codes.Unavailable, "the HSM is unavailable", &errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)}),
			[]string{"the daemon could not issue a token now: the HSM is unavailable; try again in 1.5s"}, exitUnavailable},
		{"rate limited", withDetail(codes.ResourceExhausted, "over the rate limit", &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}),
			[]string{"the daemon refused the call: over the rate limit; try again in 1s"}, exitUnavailable},
		{"no answer in time", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), []string{"within 30s (--timeout)"}, exitUnavailable},
	}
	opts := client.Options{Socket: "/run/portvakt/portvakt.sock"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explainCallError(opts, 30*time.Second, tt.err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			if got := exitStatus(err); got != tt.status {
				t.Errorf("exit status %d, want %d", got, tt.status)
			}
		})
	}
}
