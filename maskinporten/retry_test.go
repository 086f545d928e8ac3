package maskinporten

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
)

// TestRetriesAgainstSimulatorFaults: what is worth another attempt gets
// one, each attempt with a new grant (a new jti), and a refusal does not.
func TestRetriesAgainstSimulatorFaults(t *testing.T) {
	tests := []struct {
		name      string
		faults    mpsim.Faults
		status    int // of the typed error the caller gets; 0 for a network error
		temporary bool
	}{
		{"5xx", mpsim.Faults{ServerErrorRate: 1}, 503, true},
		{"429", mpsim.Faults{TooManyRequestsRate: 1}, 429, true},
		{"dropped connection", mpsim.Faults{DropRate: 1}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.Sim.SetFaults(tt.faults)
			_, err := NewClient(fastRetries()).Token(t.Context(), Exchange{Endpoint: w.Endpoint, Builder: w.builder(t, GrantOptions{}), Request: w.request(mptest.ScopeOwn)})
			if err == nil {
				t.Fatal("got a token through a failing Maskinporten")
			}
			var mpErr *Error
			if tt.status != 0 && (!errors.As(err, &mpErr) || mpErr.Status != tt.status) {
				t.Fatalf("error = %v, want the typed HTTP %d refusal", err, tt.status)
			}
			if IsTemporary(err) != tt.temporary {
				t.Fatalf("IsTemporary(%v) = %v", err, !tt.temporary)
			}
			jtis := w.Sim.Stats().JTIs
			if len(jtis) != 3 {
				t.Fatalf("the simulator saw %d attempts, want all 3 of the policy", len(jtis))
			}
			if distinct := slices.Compact(slices.Sorted(slices.Values(jtis))); len(distinct) != len(jtis) || slices.Contains(jtis, "") {
				t.Fatalf("attempts reused a jti: %v", jtis)
			}
			if n := w.Signer.Signs(); n != 3 {
				t.Fatalf("%d signatures for 3 attempts: each retry must sign a new grant", n)
			}
		})
	}
}

// TestRetryRecovers: a Maskinporten that fails once and then recovers
// yields a token, with a fresh grant for the second attempt.
func TestRetryRecovers(t *testing.T) {
	w := newWorld(t)
	w.Sim.SetFaults(mpsim.Faults{ServerErrorRate: 1})
	x := Exchange{Endpoint: w.Endpoint, Builder: w.builder(t, GrantOptions{}), Request: w.request(mptest.ScopeOwn)}
	// Heal Maskinporten once it has failed the first attempt, from the
	// hook that runs before each post.
	x.BeforePost = func(context.Context, Grant) error {
		if w.Sim.Stats().Faulted >= 1 {
			w.Sim.SetFaults(mpsim.Faults{})
		}
		return nil
	}
	tok, err := NewClient(fastRetries()).Token(t.Context(), x)
	if err != nil {
		t.Fatal(err)
	}
	jtis := w.Sim.Stats().JTIs
	if len(jtis) != 2 || jtis[0] == jtis[1] || tok.GrantJTI != jtis[1] {
		t.Fatalf("jtis %v, token from grant %s: want two attempts with different grants, the token from the second", jtis, tok.GrantJTI)
	}
}

func TestRefusalsAreNotRetried(t *testing.T) {
	w := newWorld(t)
	_, err := NewClient(fastRetries()).Token(t.Context(), Exchange{Endpoint: w.Endpoint, Builder: w.builder(t, GrantOptions{}), Request: w.request(mptest.ScopeNotGranted)})
	var mpErr *Error
	if !errors.As(err, &mpErr) || mpErr.MPCode != "MP-200" || IsTemporary(err) {
		t.Fatalf("error = %v, want a permanent MP-200", err)
	}
	if n := len(w.Sim.Stats().JTIs); n != 1 {
		t.Fatalf("%d attempts for a refusal, want 1", n)
	}
}

// TestDeadlineStopsRetries: no attempt starts after the deadline, and the
// caller learns why.
func TestDeadlineStopsRetries(t *testing.T) {
	w := newWorld(t)
	w.Sim.SetFaults(mpsim.Faults{Latency: 2 * time.Second})
	opts := fastRetries()
	opts.Retry.Deadline = 200 * time.Millisecond
	_, err := NewClient(opts).Token(t.Context(), Exchange{Endpoint: w.Endpoint, Builder: w.builder(t, GrantOptions{}), Request: w.request(mptest.ScopeOwn)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the deadline", err)
	}
	if n := len(w.Sim.Stats().JTIs); n != 1 {
		t.Fatalf("%d attempts, want 1: the only attempt outlived the deadline", n)
	}
}

// TestBeforePostFailsClosed: when the hook (the audit) refuses, the
// signed grant is never sent and no token is returned.
func TestBeforePostFailsClosed(t *testing.T) {
	w := newWorld(t)
	audit := errors.New("audit log unwritable")
	x := Exchange{Endpoint: w.Endpoint, Builder: w.builder(t, GrantOptions{}), Request: w.request(mptest.ScopeOwn),
		BeforePost: func(context.Context, Grant) error { return audit }}
	if _, err := NewClient(fastRetries()).Token(t.Context(), x); !errors.Is(err, audit) {
		t.Fatalf("error = %v, want the hook's", err)
	}
	if n := w.Sim.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d grants reached Maskinporten after the hook refused", n)
	}
}
