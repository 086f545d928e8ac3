package tokencache

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/maskinporten"
)

// breakerEvents records OnBreaker's calls.
type breakerEvents struct {
	mu   sync.Mutex
	seen []bool
}

func (b *breakerEvents) record(env string, open bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, open)
}

func (b *breakerEvents) get() []bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.seen)
}

// wantCircuitOpen fails unless err is the breaker's, with advice.
func wantCircuitOpen(t *testing.T, err error) time.Duration {
	t.Helper()
	after, ok := RetryAfter(err)
	if !errors.Is(err, ErrCircuitOpen) || !ok || after <= 0 {
		t.Fatalf("got %v (advice %v, %v), want ErrCircuitOpen with advice", err, after, ok)
	}
	return after
}

// TestBreakerBoundsAttemptsForColdKeys: five cold keys against a failing
// Maskinporten cost about Threshold attempts, not 5 × MaxAttempts (20, as
// it was).
//
// The bound: the breaker refuses every attempt once Threshold (3)
// consecutive temporary failures are counted, and a fetch waiting to
// retry is woken and refused when it opens. An attempt is made only while
// fewer than Threshold failures are counted, so all attempts are the
// Threshold failures that opened it plus those already in flight when it
// opened. Each key has at most one attempt in flight (one fetch per key,
// its attempts in turn), and the key whose failure opened it has none:
// attempts ≤ Threshold + (keys - 1).
func TestBreakerBoundsAttemptsForColdKeys(t *testing.T) {
	const keys, threshold = 5, 3
	options := func(o *Options) {
		o.MaxEntries = keys
		o.FetchTimeout = time.Hour // so that driving the clock costs no attempt
		// Retries wait exactly a millisecond (the policy's floor), and a
		// cool-down at least that: driving a millisecond at a time, the
		// clock never passes a cool-down.
		o.Retry = backoff.Policy{Initial: 1, Max: 1}
		o.Breaker.CoolDown = backoff.Policy{Initial: time.Hour, Max: time.Hour}
	}
	t.Run("one after another", func(t *testing.T) {
		c, f, clk := newTestCache(t, 120*time.Second, options)
		f.failAlways(unavailable)
		done := make(chan struct{})
		var err error
		go func() { defer close(done); _, err = c.Get(context.Background(), keyN(0), 0) }()
		drive(clk, time.Millisecond, done, func() bool { return c.BreakerOpen("test") })
		<-done
		// The first key's fetch tried until the breaker stopped it.
		if wantCircuitOpen(t, err); !errors.Is(err, unavailable) {
			t.Fatalf("first key: %v, want the last attempt's error too", err)
		}
		for i := 1; i < keys; i++ {
			_, err := c.Get(context.Background(), keyN(i), 0)
			wantCircuitOpen(t, err)
		}
		if s := c.Stats(); s.Attempts != threshold || s.BreakerOpens != 1 {
			t.Fatalf("stats %+v: want %d attempts and one opening", s, threshold)
		}
	})
	t.Run("concurrently", func(t *testing.T) {
		c, f, clk := newTestCache(t, 120*time.Second, options)
		f.failAlways(unavailable)
		errs := make(chan error, keys)
		for i := range keys {
			go func() { _, err := c.Get(context.Background(), keyN(i), 0); errs <- err }()
		}
		drive(clk, time.Millisecond, nil, func() bool { return c.BreakerOpen("test") })
		for range keys {
			if err := <-errs; !errors.Is(err, ErrCircuitOpen) && !errors.Is(err, unavailable) {
				t.Fatalf("Get = %v", err)
			} else if _, ok := RetryAfter(err); !ok {
				t.Fatalf("%v carries no advice", err)
			}
		}
		if n := c.Stats().Attempts; n < threshold || n > threshold+keys-1 {
			t.Fatalf("%d attempts for %d cold keys, want %d to %d", n, keys, threshold, threshold+keys-1)
		}
	})
	t.Run("first attempts in flight together", func(t *testing.T) {
		// The worst case of the bound but one: every key's first attempt
		// is out when the failures come back. None is retried.
		c, f, _ := newTestCache(t, 120*time.Second, options)
		gate := make(chan struct{})
		f.setGate(gate)
		f.failAlways(unavailable)
		errs := make(chan error, keys)
		for i := range keys {
			go func() { _, err := c.Get(context.Background(), keyN(i), 0); errs <- err }()
		}
		waitFor(t, func() bool { return f.calls.Load() == keys })
		close(gate) // the clock stays still: woken retries are refused
		for range keys {
			if err := <-errs; !errors.Is(err, unavailable) {
				t.Fatalf("Get = %v, want the attempt's error", err)
			}
		}
		if n := c.Stats().Attempts; n != keys {
			t.Fatalf("%d attempts, want the %d first ones only", n, keys)
		}
	})
}

// TestBreakerCounts: consecutive temporary failures of attempts across
// the environment's keys open the breaker; any other answer from
// Maskinporten, or a token, resets the count; other errors leave it.
func TestBreakerCounts(t *testing.T) {
	hsmDown := errors.New("hsm down")
	invalid := &maskinporten.Error{Status: 400, Code: "invalid_scope"}
	limited := &maskinporten.Error{Status: 429}
	tests := []struct {
		name     string
		outcomes []error // one attempt each, each for another key
		wantOpen bool
	}{
		{"three temporary failures", []error{unavailable, unavailable, unavailable}, true},
		{"429 and 5xx alike", []error{limited, unavailable, limited}, true},
		{"an HSM error leaves the count", []error{unavailable, unavailable, hsmDown, unavailable}, true},
		{"a refusal resets it", []error{unavailable, unavailable, invalid, unavailable, unavailable}, false},
		{"a token resets it", []error{unavailable, unavailable, nil, unavailable, unavailable}, false},
		{"HSM errors alone never open it", []error{hsmDown, hsmDown, hsmDown, hsmDown}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events breakerEvents
			c, f, _ := newTestCache(t, 120*time.Second, func(o *Options) {
				o.MaxAttempts = 1
				o.MaxEntries = 10
				o.OnBreaker = events.record
			})
			for i, outcome := range tt.outcomes {
				f.failAlways(outcome)
				if _, err := c.Get(context.Background(), keyN(i), 0); !errors.Is(err, outcome) {
					t.Fatalf("attempt %d: %v, want %v", i+1, err, outcome)
				}
			}
			if got := c.BreakerOpen("test"); got != tt.wantOpen {
				t.Fatalf("breaker open: %v, want %v", got, tt.wantOpen)
			}
			if want := map[bool][]bool{true: {true}, false: nil}[tt.wantOpen]; !slices.Equal(events.get(), want) {
				t.Fatalf("OnBreaker saw %v, want %v", events.get(), want)
			}
			if c.BreakerOpen("other") {
				t.Fatal("another environment's breaker opened")
			}
		})
	}
}

// TestBreakerHalfOpenProbe: after the cool-down exactly one attempt, a
// probe, goes; its failure opens the breaker again for a longer
// cool-down, its success closes it. Everyone else is refused at once.
func TestBreakerHalfOpenProbe(t *testing.T) {
	var events breakerEvents
	coolDown := backoff.Policy{Initial: 10 * time.Second, Max: 40 * time.Second}
	c, f, clk := newTestCache(t, 120*time.Second, func(o *Options) {
		o.MaxAttempts = 1
		o.MaxEntries = 10
		o.Breaker.CoolDown = coolDown
		o.OnBreaker = events.record
	})
	ctx := context.Background()
	f.failAlways(unavailable)
	for i := range 3 {
		c.Get(ctx, keyN(i), 0)
	}
	_, err := c.Get(ctx, keyN(3), 0)
	advice := wantCircuitOpen(t, err)
	if advice > coolDown.Initial+time.Millisecond || !slices.Equal(events.get(), []bool{true}) {
		t.Fatalf("advice %v, OnBreaker %v; want the first cool-down, up to %v, and one report", advice, events.get(), coolDown.Initial)
	}
	// The advice is exact: a nanosecond before it ends, still open.
	clk.Advance(advice - time.Nanosecond)
	if _, err := c.Get(ctx, keyN(3), 0); wantCircuitOpen(t, err) != time.Nanosecond {
		t.Fatalf("a nanosecond before the cool-down ends: %v", err)
	}
	clk.Advance(time.Nanosecond)

	// Half-open: the first caller's attempt is the probe; it hangs a while.
	gate := make(chan struct{})
	f.setGate(gate)
	probe := getAsync(ctx, c, keyN(3), 0)
	waitFor(t, func() bool { return f.calls.Load() == 4 })
	_, err = c.Get(ctx, keyN(4), 0)
	if wantCircuitOpen(t, err) != coolDown.Initial || !c.BreakerOpen("test") {
		t.Fatalf("beside the probe: %v; want ErrCircuitOpen, advising the shortest cool-down", err)
	}
	gate <- struct{}{} // the probe fails
	if err := <-probe; !errors.Is(err, unavailable) {
		t.Fatalf("probe: %v", err)
	}
	_, err = c.Get(ctx, keyN(4), 0)
	advice = wantCircuitOpen(t, err)
	if s := c.Stats(); advice > 2*coolDown.Initial+time.Millisecond || s.BreakerOpens != 2 || s.Attempts != 4 {
		t.Fatalf("after a failed probe: advice %v, stats %+v; want the second cool-down (up to %v), 2 openings, 4 attempts", advice, s, 2*coolDown.Initial)
	}

	clk.Advance(advice)
	f.setGate(nil)
	f.failAlways(nil)
	if v := value(t, c, keyN(4), 0); v != "token-5" {
		t.Fatalf("probe got %s", v)
	}
	if c.BreakerOpen("test") || !slices.Equal(events.get(), []bool{true, false}) {
		t.Fatalf("after a successful probe: open %v, OnBreaker %v", c.BreakerOpen("test"), events.get())
	}
}

// TestBreakerOpenHandsOutCachedTokens: while the breaker is open cached
// tokens are handed out, their refreshes wait for the cool-down, and the
// first refresh after it is the probe that closes the breaker.
func TestBreakerOpenHandsOutCachedTokens(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second, func(o *Options) {
		o.MaxAttempts = 1
		o.MaxEntries = 10
	})
	ctx := context.Background()
	value(t, c, testKey, 0) // refresh point at 90 s
	clk.Advance(90*time.Second - time.Microsecond)
	f.failAlways(unavailable)
	for i := range 3 {
		c.Get(ctx, keyN(i), 0)
	}
	if !c.BreakerOpen("test") {
		t.Fatal("breaker not open")
	}
	clk.Advance(time.Microsecond) // the refresh is due; a cool-down is at least 1 ms
	waitFor(t, func() bool {      // its timer fired and put it off to the cool-down's end
		c.mu.Lock()
		defer c.mu.Unlock()
		e := c.entries[testKey].Value.(*entry)
		return e.timer != nil && e.timerAt.After(clk.Now())
	})
	if v := value(t, c, testKey, 0); v != "token-1" {
		t.Fatalf("while open got %s, want the cached token-1", v)
	}
	_, err := c.Get(ctx, keyN(5), 0)
	advice := wantCircuitOpen(t, err)
	if n := c.Stats().Attempts; n != 4 {
		t.Fatalf("%d attempts while open, want 4 (the miss and 3 failures)", n)
	}
	f.failAlways(nil)
	clk.Advance(advice) // half-open: the scheduled refresh is the probe
	waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
	if c.BreakerOpen("test") {
		t.Fatal("the refresh's success did not close the breaker")
	}
	if v := value(t, c, testKey, 0); v != "token-5" {
		t.Fatalf("after the probe got %s, want token-5", v)
	}
}
