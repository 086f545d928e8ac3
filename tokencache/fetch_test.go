package tokencache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portvakt/portvakt/maskinporten"
)

// TestRetries: the cache tries again only temporary failures, up to
// MaxAttempts within FetchTimeout, honouring Retry-After; a fetch that
// fails carries the advice of its back-off or the server's Retry-After,
// whichever is longer.
func TestRetries(t *testing.T) {
	rateLimited := func(after time.Duration) error {
		return &maskinporten.Error{Status: 429, Code: "rate_limited", RetryAfter: after}
	}
	invalid := &maskinporten.Error{Status: 400, Code: "invalid_grant"}
	hsmDown := errors.New("hsm: device removed")
	limited := rateLimited(time.Minute)
	tests := []struct {
		name         string
		fail         func(n int64) error // the n-th attempt's error
		budget       time.Duration       // FetchTimeout; 0: an hour
		wantAttempts uint64
		wantErr      error         // nil: a token
		wantAdvice   time.Duration // exact; 0: only bounded by the back-off
		wantWaited   time.Duration // at least this much (fake) time before the token
	}{
		{name: "temporary, then a token", fail: first(1, unavailable), wantAttempts: 2},
		{name: "rate limited, then a token", fail: first(2, rateLimited(0)), wantAttempts: 3},
		{name: "Retry-After is waited", fail: first(1, rateLimited(3*time.Second)), wantAttempts: 2, wantWaited: 3 * time.Second},
		{name: "a refusal is not tried again", fail: first(9, invalid), wantAttempts: 1, wantErr: invalid},
		{name: "an HSM error is not tried again", fail: first(9, hsmDown), wantAttempts: 1, wantErr: hsmDown},
		{name: "temporary every time: MaxAttempts", fail: first(9, unavailable), wantAttempts: 4, wantErr: unavailable},
		{name: "no attempt past the budget", fail: first(9, limited), budget: 15 * time.Second, wantAttempts: 1, wantErr: limited, wantAdvice: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget := tt.budget
			if budget == 0 {
				budget = time.Hour // so that driving the clock costs no attempt
			}
			// Tokens of a day: driving the clock must not expire them
			// before the caller sees them.
			c, f, clk := newTestCache(t, 24*time.Hour, func(o *Options) {
				o.FetchTimeout = budget
				o.Breaker.Threshold = 100 // not this test's subject
			})
			f.failWith(func(n int64, _ Key) error { return tt.fail(n) })
			done := make(chan struct{})
			var tok maskinporten.Token
			var err error
			go func() {
				defer close(done)
				tok, err = c.Get(context.Background(), testKey, 0)
			}()
			drive(clk, 100*time.Millisecond, done, nil)
			if n := c.Stats().Attempts; n != tt.wantAttempts {
				t.Fatalf("%d attempts, want %d", n, tt.wantAttempts)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if waited := tok.IssuedAt.Sub(epoch); waited < tt.wantWaited {
					t.Fatalf("token issued %v after the first attempt, want at least %v", waited, tt.wantWaited)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get = %v, want %v", err, tt.wantErr)
			}
			advice, ok := RetryAfter(err)
			switch {
			case !ok:
				t.Fatalf("%v carries no advice", err)
			case tt.wantAdvice != 0 && advice != tt.wantAdvice:
				t.Fatalf("advice %v, want the server's Retry-After %v", advice, tt.wantAdvice)
			case tt.wantAdvice == 0 && (advice <= 0 || advice > 2*time.Second+time.Millisecond):
				t.Fatalf("advice %v, want the first back-off (up to 2 s)", advice)
			}
		})
	}
}

// first fails the first n attempts with err.
func first(n int64, err error) func(int64) error {
	return func(i int64) error {
		if i <= n {
			return err
		}
		return nil
	}
}

// TestEachAttemptGetsTheRestOfTheBudget: the attempts of one fetch share
// one deadline, FetchTimeout after the fetch began.
func TestEachAttemptGetsTheRestOfTheBudget(t *testing.T) {
	c, f, clk := newTestCache(t, 24*time.Hour, func(o *Options) { o.FetchTimeout = time.Hour })
	f.failWith(func(n int64, _ Key) error { return first(2, unavailable)(n) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.Get(context.Background(), testKey, 0); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, func() bool { return f.calls.Load() >= 1 }) // the fetch began at epoch
	drive(clk, 100*time.Millisecond, done, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.deadlines) != 3 {
		t.Fatalf("%d attempts, want 3", len(f.deadlines))
	}
	for i, d := range f.deadlines {
		if want := epoch.Add(time.Hour); !d.Equal(want) {
			t.Fatalf("attempt %d: deadline %v, want the fetch's %v", i+1, d, want)
		}
	}
}

// TestBudgetEndsAHangingAttempt: the deadline is on the cache's clock, and
// ends an attempt that does not answer.
func TestBudgetEndsAHangingAttempt(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	f.setGate(make(chan struct{})) // never opened: the attempt waits for its ctx
	errc := getAsync(context.Background(), c, testKey, 0)
	waitFor(t, func() bool { return f.calls.Load() == 1 })
	clk.Advance(15 * time.Second) // the default FetchTimeout
	err := <-errc
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v, want the attempt's deadline exceeded", err)
	}
	if n := c.Stats().Attempts; n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}
