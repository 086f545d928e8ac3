package daemon

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/internal/tracing"
)

// requestInterceptor gives each call a request id (returned to the caller
// in the x-request-id header, and on the call's span when it is traced),
// logs the call in one line (a successful one as log.calls says), counts
// it, and turns a panic into an Internal error rather than a dead daemon.
// It is the one interceptor of the daemon's own: the per-method metrics
// (grpc_server_*) wrap it.
func (d *Daemon) requestInterceptor(listener string) grpc.UnaryServerInterceptor {
	successLevel := callLevel(d.cfg.Log.Calls, d.cfg.Log.CallsSample)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		ctx, call := requestid.New(ctx)
		id := call.ID
		_ = grpc.SetHeader(ctx, metadata.MD{"x-request-id": []string{id}})
		span := d.tracing.tracer.Span(ctx) // the stats handler's, when traced
		if span.IsRecording() {
			span.SetAttributes(tracing.RequestID.String(id))
		}
		defer func() {
			if p := recover(); p != nil {
				d.log.ErrorContext(ctx, "panic in handler", "request_id", id, "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error; the request id is in the daemon's log")
			}
			code := status.Code(err)
			if span.IsRecording() {
				span.SetAttributes(tracing.Client.String(call.Client))
			}
			d.metrics.CountRequest(info.FullMethod, call.Client, code)
			level := slog.LevelWarn // failures and denials: always
			if code == codes.OK {
				level = successLevel()
			}
			if !d.log.Enabled(ctx, level) {
				return // nothing built for a line not written
			}
			identities := call.Identities // the handler's, when it read them
			if identities == nil {
				caller, _ := identity.FromContext(ctx)
				identities = caller.Identities
			}
			attrs := []any{"request_id", id, "method", info.FullMethod, "listener", listener,
				"caller", identities, "client", call.Client, "code", code.String(), "duration", time.Since(start).String()}
			if err != nil {
				// Status messages name fields and MP codes, never secrets.
				attrs = append(attrs, "error", status.Convert(err).Message())
			}
			d.log.Log(ctx, level, "call", attrs...)
		}()
		return handler(ctx, req)
	}
}

// callLevel is the level of a successful call's line under log.calls:
// info for all, debug for errors (only failures at info and above), and
// for sample info once in every `every` calls, debug otherwise.
func callLevel(calls string, every int) func() slog.Level {
	switch calls {
	case config.LogCallsAll:
		return func() slog.Level { return slog.LevelInfo }
	case config.LogCallsSample:
		every = max(every, 1) // validated; a config not loaded may have 0
		var n atomic.Uint64
		return func() slog.Level {
			if n.Add(1)%uint64(every) == 1%uint64(every) { // the first call, then every every-th
				return slog.LevelInfo
			}
			return slog.LevelDebug
		}
	}
	return func() slog.Level { return slog.LevelDebug }
}
