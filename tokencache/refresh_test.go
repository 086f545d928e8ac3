package tokencache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
)

// TestRefreshPoint: a token handed out is refreshed by its timer when its
// validity left falls to want + min(margin, (lifetime-want)/2), where want
// is the largest min validity asked of it; not a nanosecond before.
func TestRefreshPoint(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		asks     []time.Duration // min validities asked at issue, in turn
		wantAt   time.Duration   // the refresh, after issue
	}{
		{"no min validity: the margin", 120 * time.Second, []time.Duration{0}, 90 * time.Second},
		{"min validity 45 s", 120 * time.Second, []time.Duration{45 * time.Second}, 45 * time.Second},
		{"a larger ask moves it earlier", 120 * time.Second, []time.Duration{0, 60 * time.Second}, 30 * time.Second},
		{"a smaller ask does not move it later", 120 * time.Second, []time.Duration{30 * time.Second, 10 * time.Second}, 60 * time.Second},
		{"short-lived: half the rest of the lifetime", 10 * time.Second, []time.Duration{0}, 5 * time.Second},
		{"short-lived with an ask", 10 * time.Second, []time.Duration{4 * time.Second}, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f, clk := newTestCache(t, tt.lifetime)
			for _, minValidity := range tt.asks {
				value(t, c, testKey, minValidity)
			}
			clk.Advance(tt.wantAt - time.Nanosecond)
			if n := f.calls.Load(); n != 1 {
				t.Fatalf("%d fetches before the refresh point, want 1", n)
			}
			clk.Advance(time.Nanosecond)
			waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
			if v := value(t, c, testKey, 0); v != "token-2" {
				t.Fatalf("after the refresh Get = %s, want token-2", v)
			}
		})
	}
}

// TestTokenSourceRenewsInTheBackground is the acceptance scenario of
// refresh-ahead: a caller like client.TokenSource asks with min validity
// 45 s, keeps the token until 30 s before it expires and only then comes
// back. Every renewal finds a token refreshed in the background; only the
// first call waits for a fetch.
func TestTokenSourceRenewsInTheBackground(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	const minValidity, keepUntil = 45 * time.Second, 30 * time.Second
	ctx := context.Background()
	tok, err := c.Get(ctx, testKey, minValidity)
	if err != nil {
		t.Fatal(err)
	}
	const renewals = 10
	for i := 1; i <= renewals; i++ {
		clk.Advance(tok.ExpiresAt.Add(-keepUntil).Sub(clk.Now()))
		// The refresh scheduled when the token was handed out ran (on its
		// timer: this caller was away).
		waitFor(t, func() bool { return c.Stats().Refreshes == uint64(i) })
		old := tok.AccessToken.Reveal()
		if tok, err = c.Get(ctx, testKey, minValidity); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
		if v := tok.AccessToken.Reveal(); v == old || v != tokenName(i+1) {
			t.Fatalf("renewal %d got %s (had %s), want the refreshed %s", i, v, old, tokenName(i+1))
		}
	}
	s := c.Stats()
	if s.Misses != 1 || s.Refreshes != renewals || s.Hits != renewals || s.RefreshFailures != 0 || f.calls.Load() != renewals+1 {
		t.Fatalf("stats %+v after %d fetches; want 1 miss (the first call), %d background refreshes and %d hits", s, f.calls.Load(), renewals, renewals)
	}
}

func tokenName(n int) string { return fmt.Sprintf("token-%d", n) }

// TestIdleKeyCostsOneRefresh: a token never handed out is not scheduled,
// so a key nobody asks for stops costing fetches after one refresh.
func TestIdleKeyCostsOneRefresh(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	value(t, c, testKey, 0)
	clk.Advance(91 * time.Second)
	waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
	for range 10 {
		clk.Advance(2 * time.Minute)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d fetches over 20 idle minutes, want 2 (the miss and one refresh)", n)
	}
}

// TestHitPastTheRefreshPointRefreshesAtOnce: an ask that moves the refresh
// point into the past starts the refresh without waiting for a timer.
func TestHitPastTheRefreshPointRefreshesAtOnce(t *testing.T) {
	c, _, clk := newTestCache(t, 120*time.Second)
	value(t, c, testKey, 0) // refresh point at 90 s
	clk.Advance(40 * time.Second)
	// 80 s left > 55 s: a hit; its refresh point, 55+30 s before expiry,
	// was at 35 s.
	if v := value(t, c, testKey, 55*time.Second); v != "token-1" {
		t.Fatalf("got %s, want the cached token-1", v)
	}
	waitFor(t, func() bool { return c.Stats().Refreshes == 1 }) // the clock stays still
}

// TestRefreshKeepsTheCallersValuesNotItsCancellation: the audit of a
// background refresh names the caller whose hand-out scheduled it, and
// that caller going away does not cancel it.
func TestRefreshKeepsTheCallersValuesNotItsCancellation(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), callerKey{}, "alice"))
	if _, err := c.Get(ctx, testKey, 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	clk.Advance(90 * time.Second)
	waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := c.Stats(); s.RefreshFailures != 0 || len(f.values) != 2 || f.values[1] != "alice" {
		t.Fatalf("stats %+v, fetch contexts named %v; want the refresh to succeed naming alice", s, f.values)
	}
}

// TestErrorBackoffHoldsOffRefreshes: after a failed refresh, hits keep
// getting the valid token and start no refresh until the back-off ends;
// then one refresh goes, without waiting for a hit.
func TestErrorBackoffHoldsOffRefreshes(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	value(t, c, testKey, 0)
	f.failAlways(errors.New("hsm down"))
	clk.Advance(91 * time.Second) // the timer's refresh fails
	waitFor(t, func() bool { return c.Stats().RefreshFailures == 1 })
	for range 20 {
		if v := value(t, c, testKey, 0); v != "token-1" {
			t.Fatalf("hit during the back-off got %s, want token-1", v)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d fetches after 20 hits in the back-off, want 2 (the miss and the failed refresh)", n)
	}
	// A caller wanting more than the token has left learns when the
	// back-off ends.
	_, err := c.Get(context.Background(), testKey, 40*time.Second)
	advice, ok := RetryAfter(err)
	if !ok || advice <= 0 {
		t.Fatalf("Get beyond the token during the back-off = %v, want the remembered error with advice", err)
	}
	clk.Advance(advice - time.Nanosecond)
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d fetches before the back-off ended, want 2", n)
	}
	f.failAlways(nil)
	clk.Advance(time.Nanosecond)
	waitFor(t, func() bool { return c.Stats().Refreshes == 2 })
	if v := value(t, c, testKey, 0); v != "token-3" {
		t.Fatalf("after the back-off got %s, want the refreshed token-3", v)
	}
	if s := c.Stats(); s.RefreshFailures != 1 || f.calls.Load() != 3 {
		t.Fatalf("stats %+v after %d fetches", s, f.calls.Load())
	}
}

// TestErrorBackoffGrows: consecutive failures of a key draw each back-off
// from a longer range of the policy; a success starts it over.
func TestErrorBackoffGrows(t *testing.T) {
	policy := backoff.Policy{Initial: time.Second, Max: 8 * time.Second}
	c, f, clk := newTestCache(t, 120*time.Second, func(o *Options) { o.ErrorBackoff = policy })
	boom := errors.New("hsm down")
	fail := func(n int) {
		t.Helper()
		f.failAlways(boom)
		_, err := c.Get(context.Background(), testKey, 0)
		advice, ok := RetryAfter(err)
		limit := min(policy.Initial<<(n-1), policy.Max) + time.Millisecond
		if !errors.Is(err, boom) || !ok || advice <= 0 || advice > limit {
			t.Fatalf("failure %d: %v, advice %v; want the error with advice up to %v", n, err, advice, limit)
		}
		c.mu.Lock()
		failures := c.entries[testKey].Value.(*entry).failures
		c.mu.Unlock()
		if failures != n {
			t.Fatalf("failure %d counted as %d", n, failures)
		}
		clk.Advance(advice)
	}
	for n := 1; n <= 5; n++ {
		fail(n)
	}
	f.failAlways(nil)
	if v := value(t, c, testKey, 0); v != "token-6" {
		t.Fatalf("after the back-off got %s", v)
	}
	clk.Advance(3 * time.Minute) // expired, and its refresh too
	waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
	clk.Advance(3 * time.Minute)
	fail(1)
}
