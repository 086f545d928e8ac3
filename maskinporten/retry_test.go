package maskinporten

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
)

// The client makes one attempt; the token cache decides whether to make
// another, from IsTemporary and RetryAfter. These tests pin down that
// classification against the simulator's faults.

// TestOneAttemptAgainstSimulatorFaults: against each fault, one Post is
// one request at the simulator (never retried here) and a temporary
// error, typed where Maskinporten answered, with the server's Retry-After.
func TestOneAttemptAgainstSimulatorFaults(t *testing.T) {
	tests := []struct {
		name       string
		faults     mpsim.Faults
		opts       ClientOptions
		status     int // of the typed *Error; 0 when no answer came
		retryAfter time.Duration
		timeout    bool // the attempt's own RequestTimeout ended it
	}{
		{"5xx", mpsim.Faults{ServerErrorRate: 1}, ClientOptions{}, 503, 0, false},
		{"429", mpsim.Faults{TooManyRequestsRate: 1}, ClientOptions{}, 429, time.Second, false},
		{"dropped connection", mpsim.Faults{DropRate: 1}, ClientOptions{}, 0, 0, false},
		{"slower than the request timeout", mpsim.Faults{Latency: 5 * time.Second}, ClientOptions{RequestTimeout: 200 * time.Millisecond}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.Sim.SetFaults(tt.faults)
			g, err := w.builder(t, GrantOptions{}).Build(w.request(mptest.ScopeOwn))
			if err != nil {
				t.Fatal(err)
			}
			// The caller's context has no deadline: only the attempt's
			// RequestTimeout bounds it.
			ctx := t.Context()
			if _, ok := ctx.Deadline(); ok {
				t.Fatal("the test's context has a deadline")
			}
			began := time.Now()
			tok, attempt, err := NewClient(tt.opts).Post(ctx, w.Endpoint, g)
			elapsed := time.Since(began)
			if err == nil {
				t.Fatalf("got a token (%s) through a failing Maskinporten", tok.GrantJTI)
			}
			checkAttempt(t, attempt, err)
			if !IsTemporary(err) {
				t.Fatalf("IsTemporary(%v) = false: the cache would not try again", err)
			}
			if got := RetryAfter(err); got != tt.retryAfter {
				t.Fatalf("RetryAfter(%v) = %v, want %v", err, got, tt.retryAfter)
			}
			var mpErr *Error
			if tt.status != 0 {
				if !errors.As(err, &mpErr) || mpErr.Status != tt.status || attempt.Status != tt.status {
					t.Fatalf("error = %v (attempt status %d), want the typed HTTP %d refusal", err, attempt.Status, tt.status)
				}
			} else {
				if errors.As(err, &mpErr) || attempt.Status != 0 {
					t.Fatalf("error = %v (attempt status %d), want no answer", err, attempt.Status)
				}
				if !strings.HasPrefix(err.Error(), "Maskinporten unreachable: the token endpoint: ") {
					t.Fatalf("error reads %q", err)
				}
			}
			if tt.timeout {
				if ctx.Err() != nil || errors.Is(err, context.Canceled) {
					t.Fatalf("error = %v, caller's context %v: the caller did not give up, the attempt timed out", err, ctx.Err())
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error = %v, want the attempt's own deadline", err)
				}
				if elapsed >= tt.faults.Latency {
					t.Fatalf("the attempt took %v: RequestTimeout %v did not end it", elapsed, tt.opts.RequestTimeout)
				}
			}
			st := w.Sim.Stats()
			if st.TokenRequests != 1 || len(st.JTIs) != 1 || st.JTIs[0] != g.JTI {
				t.Fatalf("the simulator saw %d requests with jtis %v, want exactly the one grant %s", st.TokenRequests, st.JTIs, g.JTI)
			}
			if n := w.Signer.Signs(); n != 1 {
				t.Fatalf("%d signatures for one Build, want 1", n)
			}
		})
	}
}

// TestCallerCancellationIsTheCallers: when the caller gives up, the error
// wraps its context's error, so the cache can tell a caller who left from
// a Maskinporten that is slow (above, where the caller's context is not
// done).
func TestCallerCancellationIsTheCallers(t *testing.T) {
	w := newWorld(t)
	w.Sim.SetFaults(mpsim.Faults{Latency: 5 * time.Second})
	g, err := w.builder(t, GrantOptions{}).Build(w.request(mptest.ScopeOwn))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, _, err = NewClient(ClientOptions{}).Post(ctx, w.Endpoint, g)
	if !errors.Is(err, context.Canceled) || ctx.Err() == nil {
		t.Fatalf("error = %v, want the caller's cancellation", err)
	}
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// TestRefusalsAreNotTemporary: a 4xx refusal is not worth another attempt.
func TestRefusalsAreNotTemporary(t *testing.T) {
	w := newWorld(t)
	_, err := w.token(t, NewClient(ClientOptions{}), w.builder(t, GrantOptions{}), w.request(mptest.ScopeNotGranted))
	var mpErr *Error
	if !errors.As(err, &mpErr) || mpErr.MPCode != "MP-200" || IsTemporary(err) || RetryAfter(err) != 0 {
		t.Fatalf("error = %v, want a permanent MP-200", err)
	}
	if n := len(w.Sim.Stats().JTIs); n != 1 {
		t.Fatalf("%d requests for one attempt, want 1", n)
	}
}

// TestBrokenAnswersAreBadResponses: a 200 that cannot be read as a token
// is ErrBadResponse, and not temporary: trying again would get the same.
func TestBrokenAnswersAreBadResponses(t *testing.T) {
	b := mustBuilder(t)
	for name, body := range map[string]string{
		"truncated":     `{"access_token":"eyJ.a.b","token_type":"Bea`,
		"html":          `<html>It works!</html>`,
		"no token type": `{"access_token":"eyJ.a.b","expires_in":120}`,
		"empty":         ``,
	} {
		t.Run(name, func(t *testing.T) {
			var hits atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
				hits.Add(1)
				rw.Header().Set("Content-Type", "application/json")
				_, _ = rw.Write([]byte(body))
			}))
			defer srv.Close()
			g, err := b.Build(testRequest())
			if err != nil {
				t.Fatal(err)
			}
			_, attempt, err := NewClient(ClientOptions{}).Post(t.Context(), srv.URL+"/token", g)
			checkAttempt(t, attempt, err)
			if !errors.Is(err, ErrBadResponse) || IsTemporary(err) || attempt.Status != http.StatusOK {
				t.Fatalf("error = %v (temporary %v, status %d), want a permanent ErrBadResponse from a 200", err, IsTemporary(err), attempt.Status)
			}
			if n := hits.Load(); n != 1 {
				t.Fatalf("%d requests, want 1", n)
			}
		})
	}
}

// TestEachBuildHasANewJTI: two Builds of the same request are two grants;
// each Post sends the grant it is given, so a grant posted again (as a
// cache re-using it for a retry would) is refused as a replay.
func TestEachBuildHasANewJTI(t *testing.T) {
	w := newWorld(t)
	c := NewClient(ClientOptions{})
	b := w.builder(t, GrantOptions{})
	req := w.request(mptest.ScopeOwn)
	g1, err := b.Build(req)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := b.Build(req)
	if err != nil {
		t.Fatal(err)
	}
	if g1.JTI == "" || g1.JTI == g2.JTI || g1.Assertion.Reveal() == g2.Assertion.Reveal() {
		t.Fatalf("two Builds gave jtis %q and %q: each attempt needs its own grant", g1.JTI, g2.JTI)
	}
	if n := w.Signer.Signs(); n != 2 {
		t.Fatalf("%d signatures for two Builds, want 2", n)
	}
	for _, g := range []Grant{g1, g2} {
		tok, _, err := c.Post(t.Context(), w.Endpoint, g)
		if err != nil || tok.GrantJTI != g.JTI {
			t.Fatalf("Post(grant %s) = token from %s, %v", g.JTI, tok.GrantJTI, err)
		}
	}
	_, _, err = c.Post(t.Context(), w.Endpoint, g1)
	var mpErr *Error
	if !errors.As(err, &mpErr) || mpErr.MPCode != "MP-012" || IsTemporary(err) {
		t.Fatalf("posting grant %s again: %v, want a permanent MP-012", g1.JTI, err)
	}
	if jtis := w.Sim.Stats().JTIs; len(jtis) != 3 || jtis[0] != g1.JTI || jtis[1] != g2.JTI || jtis[2] != g1.JTI {
		t.Fatalf("the simulator saw jtis %v, want %s, %s, %s", jtis, g1.JTI, g2.JTI, g1.JTI)
	}
}

// TestFreshGrantAfterAFault: after a temporary failure, the next attempt
// (a new grant, as the cache makes it) gets the token.
func TestFreshGrantAfterAFault(t *testing.T) {
	w := newWorld(t)
	c := NewClient(ClientOptions{})
	b := w.builder(t, GrantOptions{})
	w.Sim.SetFaults(mpsim.Faults{ServerErrorRate: 1})
	if _, err := w.token(t, c, b, w.request(mptest.ScopeOwn)); !IsTemporary(err) {
		t.Fatalf("first attempt: %v, want a temporary error", err)
	}
	w.Sim.SetFaults(mpsim.Faults{})
	tok, err := w.token(t, c, b, w.request(mptest.ScopeOwn))
	if err != nil {
		t.Fatal(err)
	}
	jtis := w.Sim.Stats().JTIs
	if len(jtis) != 2 || jtis[0] == jtis[1] || tok.GrantJTI != jtis[1] {
		t.Fatalf("jtis %v, token from grant %s: want two attempts with different grants, the token from the second", jtis, tok.GrantJTI)
	}
}

// TestPostRefusesABadEndpoint: nothing is sent to an endpoint that is not
// HTTPS (or loopback HTTP), and that is not temporary.
func TestPostRefusesABadEndpoint(t *testing.T) {
	g, err := mustBuilder(t).Build(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{"http://maskinporten.no/token", "token", ""} {
		_, _, err := NewClient(ClientOptions{}).Post(t.Context(), endpoint, g)
		if !errors.Is(err, ErrInvalidRequest) || IsTemporary(err) {
			t.Errorf("Post(%q) error = %v, want a permanent ErrInvalidRequest", endpoint, err)
		}
	}
}

func mustBuilder(t *testing.T) *GrantBuilder {
	t.Helper()
	b, err := NewGrantBuilder(newSoftSigner(t), GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
