//go:build benchfloor

package daemon

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// A build with -tags benchfloor (bench/e2e makes one; no shipped build
// has it) measures the framework's floor: GetToken answers its first call
// as always, and every later call with that first reply, without calling
// the service. The call is still decoded, runs through the same
// interceptors (metrics, request id, log line) and has its reply encoded,
// on the same server and transport: what the fastest possible GetToken,
// with messages of GetToken's size, costs on top of the no-op RPC.
// Nothing is decided, cached or recorded for those calls, which is why
// it is a measurement and never a daemon.
func floorInterceptors() []grpc.UnaryServerInterceptor {
	var first atomic.Pointer[portvaktv1.GetTokenResponse]
	return []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod != portvaktv1.TokenService_GetToken_FullMethodName {
			return handler(ctx, req)
		}
		if resp := first.Load(); resp != nil {
			return resp, nil
		}
		resp, err := handler(ctx, req)
		if r, ok := resp.(*portvaktv1.GetTokenResponse); ok && err == nil {
			first.CompareAndSwap(nil, r)
		}
		return resp, err
	}}
}
