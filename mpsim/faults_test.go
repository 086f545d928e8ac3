package mpsim

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jtiOf reads the jti of a grant built by the tests.
func jtiOf(t *testing.T, grant string) string {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(grant, c); err != nil {
		t.Fatal(err)
	}
	return c["jti"].(string)
}

func TestFaultResponses(t *testing.T) {
	tests := []struct {
		name       string
		faults     Faults
		status     int
		err        string
		retryAfter string
	}{
		{"server error", Faults{ServerErrorRate: 1}, http.StatusServiceUnavailable, "server_error", ""},
		{"too many requests", Faults{TooManyRequestsRate: 1}, http.StatusTooManyRequests, "too_many_requests", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, func(c *Config) { c.Faults = tt.faults })
			g := s.grant(t, nil)
			r := s.post(t, g)
			if r.status != tt.status || r.err != tt.err {
				t.Fatalf("got %d %s, want %d %s", r.status, r.err, tt.status, tt.err)
			}
			if !strings.HasSuffix(r.message, "[trace_id: "+r.trace+"]") {
				t.Errorf("description %q does not end with the trace id %s", r.message, r.trace)
			}
			if got := r.header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			st := s.Stats()
			if st.Faulted != 1 || st.Issued != 0 || len(st.Refused) != 0 || !slices.Equal(st.JTIs, []string{jtiOf(t, g)}) {
				t.Errorf("stats %+v, want one faulted request with the grant's jti", st)
			}

			// The faulted grant was not burned: once the fault is gone,
			// the same grant is accepted.
			s.SetFaults(Faults{})
			if r := s.post(t, g); r.status != http.StatusOK {
				t.Errorf("after clearing faults: %d %s %s", r.status, r.mp, r.message)
			}
		})
	}
}

func TestFaultDrop(t *testing.T) {
	s := startSim(t, func(c *Config) { c.Faults = Faults{DropRate: 1} })
	g := s.grant(t, nil)
	resp, err := http.Post(s.url+"token", "application/x-www-form-urlencoded", strings.NewReader(tokenForm(g)))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a transport error", resp.StatusCode)
	}
	if st := s.Stats(); st.Faulted != 1 || !slices.Equal(st.JTIs, []string{jtiOf(t, g)}) {
		t.Errorf("stats %+v, want one faulted request with the grant's jti", st)
	}
}

func TestFaultLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	s := startSim(t, func(c *Config) { c.Faults = Faults{Latency: latency} })
	start := time.Now()
	r := s.post(t, s.grant(t, nil))
	if took := time.Since(start); took < latency {
		t.Errorf("request took %s, want at least %s", took, latency)
	}
	if r.status != http.StatusOK {
		t.Errorf("got %d %s, want 200 after the delay", r.status, r.mp)
	}

	// A client that gives up during the delay gets no answer, and the
	// simulator stops waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"token", strings.NewReader(tokenForm(s.grant(t, nil))))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			resp.Body.Close()
		}
		t.Errorf("got %v, want the client's deadline", err)
	}
}

func TestSetFaultsWhileServing(t *testing.T) {
	s := startSim(t, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			r := s.post(t, s.grant(t, nil))
			if r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
				t.Errorf("got %d, want 200 or 503", r.status)
			}
		})
	}
	for i := range 20 {
		s.SetFaults(Faults{ServerErrorRate: float64(i%2) / 2})
	}
	wg.Wait()
	if st := s.Stats(); st.TokenRequests != 8 || len(st.JTIs) != 8 || st.Issued+st.Faulted != 8 {
		t.Errorf("stats %+v, want 8 requests, each issued or faulted", st)
	}
}

func TestFaultsValidate(t *testing.T) {
	for _, f := range []Faults{
		{Latency: -time.Second},
		{DropRate: 1.5},
		{ServerErrorRate: -0.1},
		{ServerErrorRate: 0.6, TooManyRequestsRate: 0.6},
	} {
		if err := f.validate(); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
	if err := (Faults{ServerErrorRate: 0.7, TooManyRequestsRate: 0.2, DropRate: 0.1}).validate(); err != nil {
		t.Errorf("rates adding up to 1: %v", err)
	}
	s := startSim(t, nil)
	defer func() {
		if recover() == nil {
			t.Error("SetFaults with a rate of 2 did not panic")
		}
	}()
	s.SetFaults(Faults{DropRate: 2})
}
