package maskinporten

import (
	"net/http"
	"testing"
	"time"
)

// fixedClock is a Clock on a local clock that stands still at base, a
// whole second, so that offsets come out exact.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock(threshold time.Duration) *Clock {
	return NewClock(ClockOptions{Threshold: threshold, Local: func() time.Time { return base }})
}

// observeAt reports an answer whose Date is base+ahead, sent at base and
// received 200 ms later.
func observeAt(c *Clock, ahead time.Duration) (time.Duration, bool) {
	return c.Observe(base.Add(ahead).Format(http.TimeFormat), base, base.Add(200*time.Millisecond))
}

// TestClockOffset: the offset is Maskinporten's time minus the local time,
// positive when Maskinporten is ahead, measured from the middle of the
// round trip to the middle of Date's second; the latest answer counts.
func TestClockOffset(t *testing.T) {
	c := fixedClock(0)
	if _, known := c.Offset(); known {
		t.Fatal("an offset is known before any answer")
	}
	for _, tt := range []struct {
		ahead, want time.Duration
	}{
		// Date base+30s stands for base+30.5s; the answer was made at base+0.1s.
		{30 * time.Second, 30*time.Second + 400*time.Millisecond},
		{-30 * time.Second, -30*time.Second + 400*time.Millisecond},
		{0, 400 * time.Millisecond},
	} {
		got, ok := observeAt(c, tt.ahead)
		if !ok || got != tt.want {
			t.Errorf("Maskinporten %v ahead: Observe = %v, %v; want %v, true", tt.ahead, got, ok, tt.want)
		}
		if off, known := c.Offset(); !known || off != tt.want {
			t.Errorf("Maskinporten %v ahead: Offset = %v, %v; want the latest answer's %v", tt.ahead, off, known, tt.want)
		}
	}
}

// TestClockThreshold: Now is the local time until the offset exceeds the
// threshold, then Maskinporten's, in either direction.
func TestClockThreshold(t *testing.T) {
	for _, tt := range []struct {
		name      string
		threshold time.Duration
		ahead     time.Duration
		want      time.Time
	}{
		{"well synced: noise stays out of iat", 0, 0, base},
		{"under the default 3 s", 0, 2 * time.Second, base},
		{"over the default 3 s, ahead", 0, 30 * time.Second, base.Add(30*time.Second + 400*time.Millisecond)},
		{"over the default 3 s, behind", 0, -30 * time.Second, base.Add(-30*time.Second + 400*time.Millisecond)},
		{"under a threshold of 10 s", 10 * time.Second, 8 * time.Second, base},
		{"over a threshold of 1 s", time.Second, 2 * time.Second, base.Add(2*time.Second + 400*time.Millisecond)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := fixedClock(tt.threshold)
			if got := c.Now(); !got.Equal(base) {
				t.Fatalf("Now before any answer = %v, want the local time %v", got, base)
			}
			observeAt(c, tt.ahead)
			if got := c.Now(); !got.Equal(tt.want) {
				t.Errorf("Now = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClockIgnoresUnusableAnswers: an answer without a readable Date, or
// without a round trip, changes nothing.
func TestClockIgnoresUnusableAnswers(t *testing.T) {
	c := fixedClock(0)
	observeAt(c, 30*time.Second)
	want, _ := c.Offset()
	observed := 0
	c.onObserve = func(time.Duration) { observed++ }
	for _, tt := range []struct {
		name           string
		date           string
		sent, received time.Time
	}{
		{"no Date", "", base, base},
		{"garbage", "yesterday-ish", base, base},
		{"RFC 3339, not an HTTP date", base.Format(time.RFC3339), base, base},
		{"not sent", base.Format(http.TimeFormat), time.Time{}, base},
		{"received before sent", base.Format(http.TimeFormat), base, base.Add(-time.Second)},
	} {
		if off, ok := c.Observe(tt.date, tt.sent, tt.received); ok {
			t.Errorf("%s: Observe = %v, true; want it ignored", tt.name, off)
		}
	}
	if got, known := c.Offset(); !known || got != want {
		t.Errorf("Offset = %v, %v after unusable answers, want the last usable %v", got, known, want)
	}
	if observed != 0 {
		t.Errorf("OnObserve told of %d unusable answers", observed)
	}
	// The other formats http.ParseTime reads are used.
	if _, ok := c.Observe(base.Format(time.RFC850), base, base); !ok {
		t.Error("an RFC 850 Date was ignored")
	}
}

// TestClockOnObserve: every usable answer is reported, with its offset.
func TestClockOnObserve(t *testing.T) {
	var got []time.Duration
	c := NewClock(ClockOptions{Local: func() time.Time { return base }, OnObserve: func(d time.Duration) { got = append(got, d) }})
	observeAt(c, 30*time.Second)
	observeAt(c, 30*time.Second)
	c.Observe("", base, base)
	if len(got) != 2 || got[0] != 30*time.Second+400*time.Millisecond {
		t.Errorf("OnObserve saw %v, want the two usable answers' offsets", got)
	}
}

// TestClockMoved: a retry after MP-130 is worth it only when the grant
// would now be made on a clock that differs by more than the threshold.
func TestClockMoved(t *testing.T) {
	c := fixedClock(0)
	before := c.Correction()
	observeAt(c, 2*time.Second)
	if c.Moved(before) {
		t.Error("an offset under the threshold counts as moved: the grant would be the same")
	}
	observeAt(c, 30*time.Second)
	if !c.Moved(before) {
		t.Error("an offset of 30 s learnt does not count as moved")
	}
	before = c.Correction()
	observeAt(c, 31*time.Second)
	if c.Moved(before) {
		t.Error("a second more counts as moved: Date's noise would cause retries")
	}
	observeAt(c, 0)
	if !c.Moved(before) {
		t.Error("the host's clock put right does not count as moved")
	}
}

func TestIsClockRefusal(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&Error{Status: 400, Code: "invalid_grant", MPCode: "MP-130"}, true},
		{&Error{Status: 400, Code: "invalid_grant", MPCode: "MP-012"}, false},
		{&Error{Status: 400, Code: "invalid_scope", MPCode: "MP-130"}, false},
		{&networkError{err: http.ErrHandlerTimeout}, false},
		{nil, false},
	} {
		if got := IsClockRefusal(tt.err); got != tt.want {
			t.Errorf("IsClockRefusal(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
