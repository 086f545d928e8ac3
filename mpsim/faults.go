package mpsim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"
)

// Faults are failures the simulator injects into /token requests after
// reading them (and recording their jti), so clients can be tested against
// a slow, overloaded or flaky Maskinporten. The zero value injects nothing.
//
// One random draw per request picks at most one of drop, 503 and 429, so
// each rate is exactly the share of requests that get that fault; the rates
// must therefore add up to at most 1.
type Faults struct {
	// Latency delays every /token request before it is answered.
	Latency time.Duration `yaml:"latency"`
	// ServerErrorRate is the share of requests answered 503 server_error.
	ServerErrorRate float64 `yaml:"server_error_rate"`
	// TooManyRequestsRate is the share answered 429 too_many_requests
	// with Retry-After: 1.
	TooManyRequestsRate float64 `yaml:"too_many_requests_rate"`
	// DropRate is the share whose connection is closed without any
	// response, as a crashed proxy would.
	DropRate float64 `yaml:"drop_rate"`
	// SelfServiceDown answers every request to the self-service API 503.
	SelfServiceDown bool `yaml:"self_service_down"`
}

// validate says which setting is out of range.
func (f Faults) validate() error {
	var errs []error
	if f.Latency < 0 {
		errs = append(errs, fmt.Errorf("faults: latency %s must not be negative", f.Latency))
	}
	rates := []struct {
		name string
		v    float64
	}{
		{"server_error_rate", f.ServerErrorRate},
		{"too_many_requests_rate", f.TooManyRequestsRate},
		{"drop_rate", f.DropRate},
	}
	sum := 0.0
	for _, r := range rates {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			errs = append(errs, fmt.Errorf("faults: %s %v must be between 0 and 1", r.name, r.v))
			continue
		}
		sum += r.v
	}
	// A small tolerance, so that rates such as 0.7 + 0.2 + 0.1 whose
	// floating-point sum is a hair above 1 are accepted.
	if sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("faults: server_error_rate + too_many_requests_rate + drop_rate is %v; it must be at most 1, since each request gets at most one fault", sum))
	}
	return errors.Join(errs...)
}

// SetFaults replaces the injected faults; it is safe to call while the
// server is serving, and takes effect for requests that have not yet
// reached the fault stage. Out-of-range values are a programming error and
// make SetFaults panic, since a silently clamped rate would make a test
// pass for the wrong reason; validate values from users with New or
// LoadConfig instead.
func (s *Server) SetFaults(f Faults) {
	if err := f.validate(); err != nil {
		panic("mpsim: SetFaults: " + err.Error())
	}
	s.faults.Store(&f)
}

// applyFaults injects the configured faults into a /token request. It
// reports whether it has dealt with the request (answered it, dropped it,
// or given up because the client left), in which case the caller must not
// touch w again.
func (s *Server) applyFaults(w http.ResponseWriter, r *http.Request, info *requestInfo) bool {
	f := s.faults.Load()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client gave up, or the server is shutting down:
			// nobody would read an answer.
			info.fault = "cancelled"
			return true
		}
	}

	u := rand.Float64()
	switch {
	case u < f.DropRate:
		info.fault = "drop"
		s.countFault()
		drop(w)
	case u < f.DropRate+f.ServerErrorRate:
		info.fault = "server-error"
		s.countFault()
		writeJSON(w, http.StatusServiceUnavailable, errorBody{
			Error:            "server_error",
			ErrorDescription: tracedDescription("Simulated fault: service temporarily unavailable, try again later", info.trace),
		})
	case u < f.DropRate+f.ServerErrorRate+f.TooManyRequestsRate:
		info.fault = "too-many-requests"
		s.countFault()
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, errorBody{
			Error:            "too_many_requests",
			ErrorDescription: tracedDescription("Simulated fault: too many requests, retry after 1 second", info.trace),
		})
	default:
		return false
	}
	return true
}

// drop closes the connection without writing a response. Hijacking is how
// an HTTP/1 handler gets at the connection; where it is not possible
// (HTTP/2), aborting the handler is the nearest equivalent: the server then
// resets the stream without a response.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// tracedDescription formats an error_description that has no MP code: an
// injected fault (Maskinporten's own outages carry none either) or a wrong
// method on the metadata endpoints.
func tracedDescription(msg, trace string) string {
	return fmt.Sprintf("%s [trace_id: %s]", msg, trace)
}
