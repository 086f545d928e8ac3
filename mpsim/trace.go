package mpsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"
)

// requestInfo is what a handler learns about a request, for the
// X-Trace-Id header, error descriptions and the log line. It deliberately
// has no field for an assertion or a token: those must never be logged.
type requestInfo struct {
	trace    string
	mpCode   string
	clientID string
	jti      string
	fault    string
}

type infoKey struct{}

// infoFrom returns the request's info; traced always provides one.
func infoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{trace: newTraceID()}
}

// newTraceID returns 16 random hex digits, the shape of Maskinporten's
// trace ids.
func newTraceID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// traced gives every request a trace id (sent as X-Trace-Id) and logs one
// line per request once it has been answered.
func (s *Server) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &requestInfo{trace: newTraceID()}
		w.Header().Set("X-Trace-Id", info.trace)
		rec := &statusRecorder{ResponseWriter: w, now: s.now}
		start := time.Now()
		// Deferred, so a request aborted with a panic (a dropped
		// connection on HTTP/2) is logged too.
		defer func() { s.logRequest(r, rec.status, info, time.Since(start)) }()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
	})
}

// logRequest writes the request's log line. Status 0 means no response was
// written (a dropped connection, or a client that left).
func (s *Server) logRequest(r *http.Request, status int, info *requestInfo, d time.Duration) {
	if s.cfg.Logger == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.String("trace_id", info.trace),
		slog.Duration("duration", d),
	}
	for _, a := range []struct{ k, v string }{
		{"mp_code", info.mpCode}, {"client_id", info.clientID}, {"jti", info.jti}, {"fault", info.fault},
	} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	s.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// statusRecorder remembers the status written, and sets the Date header
// from the simulator's clock (now) when the response's header is written,
// as Maskinporten's responses carry its own time: net/http would
// otherwise set it from the real clock. Unwrap lets
// http.ResponseController reach the underlying writer to hijack it.
type statusRecorder struct {
	http.ResponseWriter
	now    func() time.Time
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
		r.ResponseWriter.Header().Set("Date", r.now().UTC().Format(http.TimeFormat))
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
