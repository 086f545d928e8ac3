package tokenservice

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// A method's handler allocates what decoding its request does and nothing
// more (the codec's holder once cost two allocations a call); a request
// that cannot be decoded is still refused through the interceptor, naming
// the field.
func TestHandler(t *testing.T) {
	c := codec{proto: encoding.GetCodecV2("proto")}
	good, err := c.Marshal(&portvaktv1.GetTokenRequest{Scopes: []string{"svv:kjoretoy/ecoc"}, Environment: "test"})
	if err != nil {
		t.Fatal(err)
	}
	bad := mem.BufferSlice{mem.SliceBuffer([]byte("\x12\x02\xff\xfe"))} // environment: not UTF-8
	reply := &portvaktv1.GetTokenResponse{}
	h := unary(nil, portvaktv1.TokenService_GetToken_FullMethodName, func(context.Context, *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, error) {
		return reply, nil
	})
	var intercepted int
	interceptor := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		intercepted++
		return handler(ctx, req)
	}
	call := func(data mem.BufferSlice) (any, error) {
		return h(nil, context.Background(), func(v any) error { return c.Unmarshal(data, v) }, interceptor)
	}

	if got, err := call(good); err != nil || got != reply || intercepted != 1 {
		t.Fatalf("a good request: %v, %v, through the interceptor %d times", got, err, intercepted)
	}
	if _, err := call(bad); status.Code(err) != codes.InvalidArgument || intercepted != 2 {
		t.Fatalf("a request that is not UTF-8: %v, through the interceptor %d times", err, intercepted)
	}
	decodeOnly := testing.AllocsPerRun(100, func() { _ = c.proto.Unmarshal(good, new(portvaktv1.GetTokenRequest)) })
	if n := testing.AllocsPerRun(100, func() { _, _ = call(good) }); n > decodeOnly+1 { // +1: the test's dec closure
		t.Errorf("a call allocates %v times, decoding its request %v", n, decodeOnly)
	}
}
