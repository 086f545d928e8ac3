package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// TestToStatus: each kind of failure reaches the caller as the code it can
// act on.
func TestToStatus(t *testing.T) {
	refusal := maskinporten.ParseError(400, http.Header{}, []byte(`{"error":"invalid_scope","error_description":"scope not granted (MP-200) [trace_id: 0123456789abcdef]"}`))
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"bad field", &fieldError{"consumer_org", "bad check digit"}, codes.InvalidArgument, "consumer_org: bad check digit"},
		{"HSM away", fmt.Errorf("signing: %w", signer.ErrUnavailable), codes.Unavailable, "retry with back-off"},
		{"HSM busy", fmt.Errorf("signing: %w", signer.ErrBusy), codes.Unavailable, "retry"},
		{"Maskinporten down", maskinporten.ParseError(503, http.Header{}, nil), codes.Unavailable, "Maskinporten is unavailable"},
		{"Maskinporten refuses", refusal, codes.FailedPrecondition, "MP-200"},
		{"too short", fmt.Errorf("%w: 2m", tokencache.ErrTooShort), codes.FailedPrecondition, "shorter"},
		{"caller gone", context.Canceled, codes.Canceled, ""},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ""},
		{"unknown", errors.New("boom"), codes.Internal, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(toStatus(tt.err))
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Fatalf("toStatus = %v %q, want %v saying %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
}
