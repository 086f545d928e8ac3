package daemon_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// rawCodec sends bytes as they are: the Go protobuf library refuses to
// encode a string that is not UTF-8, and a caller in another language (or
// an attacker) may send one anyway.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestInvalidUTF8IsABadRequest: a field that is not UTF-8 is
// INVALID_ARGUMENT naming the field (it was INTERNAL, from inside
// grpc-go), and the call is logged like any other.
func TestInvalidUTF8IsABadRequest(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	for _, tt := range []struct {
		field string
		num   protowire.Number
	}{
		{"scopes", 1},
		{"environment", 2},
	} {
		t.Run(tt.field, func(t *testing.T) {
			var req []byte
			if tt.num != 1 {
				req = protowire.AppendTag(req, 1, protowire.BytesType)
				req = protowire.AppendString(req, mptest.ScopeOwn)
			}
			req = protowire.AppendTag(req, tt.num, protowire.BytesType)
			req = protowire.AppendBytes(req, []byte("svv:\xff\xfe"))
			var reply []byte
			err := connOf(t, e).Invoke(t.Context(), portvaktv1.TokenService_GetToken_FullMethodName, &req, &reply, grpc.ForceCodecV2(rawCodec{}))
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("a %s field that is not UTF-8: %v, want INVALID_ARGUMENT", tt.field, err)
			}
			var violations []string
			for _, d := range st.Details() {
				if bad, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range bad.GetFieldViolations() {
						violations = append(violations, v.GetField())
					}
				}
			}
			if len(violations) != 1 || violations[0] != tt.field {
				t.Fatalf("BadRequest names %v, want [%s]", violations, tt.field)
			}
			if !containsAny(e.logs.String(), `"code":"InvalidArgument"`) {
				t.Fatalf("the refused call is not in the daemon's log:\n%s", e.logs.String())
			}
		})
	}
}

// TestImpossibleMinValidityIsABadRequest: a min_validity no token can
// meet (119.9 s of Maskinporten's 120 s tokens) is INVALID_ARGUMENT giving
// the longest allowed, and costs one fetch, not a signature and a POST on
// every call as it did.
func TestImpossibleMinValidityIsABadRequest(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", MinValidity: durationpb.New(119900 * time.Millisecond)}
	for i := range 5 {
		_, _, err := call(t, e, req)
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "the longest min_validity allowed is 1m0s") {
			t.Fatalf("call %d: %v, want INVALID_ARGUMENT giving the longest allowed", i, err)
		}
		var field string
		for _, d := range st.Details() {
			if bad, ok := d.(*errdetails.BadRequest); ok && len(bad.GetFieldViolations()) == 1 {
				field = bad.GetFieldViolations()[0].GetField()
			}
		}
		if field != "min_validity" {
			t.Fatalf("call %d: BadRequest names %q, want min_validity", i, field)
		}
	}
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		t.Fatalf("5 calls cost %d POSTs, want the 1 that learnt the tokens' lifetime", n)
	}
}
