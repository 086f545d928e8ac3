package backoff

import (
	"testing"
	"time"
)

func TestDelayGrowsAndIsCapped(t *testing.T) {
	p := Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	tests := []struct {
		attempt int
		limit   time.Duration
	}{
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{4, 80 * time.Millisecond},
		{5, 100 * time.Millisecond},
		{60, 100 * time.Millisecond},
		{1000, 100 * time.Millisecond}, // no overflow into a zero or negative limit
	}
	for _, tt := range tests {
		var longest time.Duration
		for range 2000 {
			d := p.Delay(tt.attempt)
			if d < time.Millisecond || d > tt.limit+time.Millisecond {
				t.Fatalf("Delay(%d) = %v, want within [1ms, %v]", tt.attempt, d, tt.limit+time.Millisecond)
			}
			longest = max(longest, d)
		}
		// Full jitter spreads over the whole range: 2000 draws reach its top half.
		if longest < tt.limit/2 {
			t.Errorf("Delay(%d): longest of 2000 draws %v, want the range up to %v used", tt.attempt, longest, tt.limit)
		}
	}
}

func TestZeroPolicyWaitsAMillisecond(t *testing.T) {
	if d := (Policy{}).Delay(3); d != time.Millisecond {
		t.Fatalf("Delay of a zero policy = %v, want 1ms", d)
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := Jitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("Jitter(1s) = %s, want within [0.5s, 1s]", d)
		}
	}
	if d := Jitter(0); d != 0 {
		t.Fatalf("Jitter(0) = %s", d)
	}
}
