package daemon

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/internal/tracing"
)

// requestInterceptor gives each call a request id (returned to the caller
// in the x-request-id header, and on the call's span when it is traced),
// logs the call in one line, and turns a panic into an Internal error
// rather than a dead daemon.
func (d *Daemon) requestInterceptor(listener string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		ctx, call := requestid.New(ctx)
		id := call.ID
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", id))
		span := d.tracing.tracer.Span(ctx) // the stats handler's, when traced
		if span.IsRecording() {
			span.SetAttributes(tracing.RequestID.String(id))
		}
		defer func() {
			if p := recover(); p != nil {
				d.log.ErrorContext(ctx, "panic in handler", "request_id", id, "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error; the request id is in the daemon's log")
			}
			caller, _ := identity.FromContext(ctx)
			code := status.Code(err)
			level := slog.LevelInfo
			if code != codes.OK {
				level = slog.LevelWarn
			}
			if span.IsRecording() {
				span.SetAttributes(tracing.Client.String(call.Client))
			}
			if d.metrics != nil {
				d.metrics.Requests.WithLabelValues(info.FullMethod, call.Client, code.String()).Inc()
			}
			attrs := []any{"request_id", id, "method", info.FullMethod, "listener", listener,
				"caller", caller.Identities, "client", call.Client, "code", code.String(), "duration", time.Since(start).String()}
			if err != nil {
				// Status messages name fields and MP codes, never secrets.
				attrs = append(attrs, "error", status.Convert(err).Message())
			}
			d.log.Log(ctx, level, "call", attrs...)
		}()
		return handler(ctx, req)
	}
}
