package maskinporten

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// DefaultClockThreshold is how far the local clock may be off
// Maskinporten's before grants follow Maskinporten's clock. Maskinporten
// refuses an iat more than 10 s from its own time (MP-130); below the
// threshold a host keeps its own time, so that a well-synced host never
// shifts its iat by the noise of a measurement.
const DefaultClockThreshold = 3 * time.Second

// ClockOptions configure a Clock.
type ClockOptions struct {
	// Threshold: beyond this offset Now follows Maskinporten's clock.
	// Default DefaultClockThreshold.
	Threshold time.Duration
	// Local is the host's clock; default time.Now. It must be the clock
	// the answers' send and receive times are read on.
	Local func() time.Time
	// OnObserve, when set, is told the offset after every observation
	// (for a metric, a warning). It is called outside the Clock's lock,
	// possibly from several goroutines at once.
	OnObserve func(offset time.Duration)
}

// Clock is one environment's estimate of Maskinporten's clock, learnt from
// the Date header of its answers. Its Now is a grant's clock: the local
// time, or Maskinporten's when the two are further apart than the
// threshold, so that a host whose clock drifts keeps getting tokens.
//
// It keeps the latest measurement rather than an average: Date has a
// resolution of one second, so one measurement is good to about half a
// second plus half the round trip, well inside Maskinporten's 10 s; an
// average would lag behind exactly when it matters, when the host's clock
// jumps (a VM resumed, NTP stepping the clock), and the first grant after
// the jump would be refused again. The threshold keeps the noise of
// single measurements away from a host whose clock is right.
//
// A Clock is safe for concurrent use. The zero value is not usable; use
// NewClock.
type Clock struct {
	threshold time.Duration
	local     func() time.Time
	onObserve func(time.Duration)

	mu     sync.Mutex
	offset time.Duration
	known  bool
}

// NewClock applies the defaults. No offset is known until Observe.
func NewClock(opts ClockOptions) *Clock {
	if opts.Threshold <= 0 {
		opts.Threshold = DefaultClockThreshold
	}
	if opts.Local == nil {
		opts.Local = time.Now
	}
	return &Clock{threshold: opts.Threshold, local: opts.Local, onObserve: opts.OnObserve}
}

// Observe learns the offset from one answer: its Date header and the local
// times the request was sent and the answer received. The answer was
// made somewhere between the two, taken as their midpoint; Date is
// Maskinporten's time cut to the second, taken as the middle of that
// second. A missing or unreadable Date, or times that make no round trip,
// teach nothing and are ignored: ok is false.
func (c *Clock) Observe(date string, sent, received time.Time) (offset time.Duration, ok bool) {
	if date == "" || sent.IsZero() || received.Before(sent) {
		return 0, false
	}
	theirs, err := http.ParseTime(date)
	if err != nil {
		return 0, false
	}
	// received.Sub(sent) is on the monotonic clock when both have it: a
	// step of the wall clock during the request does not count twice.
	mid := sent.Add(received.Sub(sent) / 2)
	offset = theirs.Add(500 * time.Millisecond).Sub(mid)
	c.mu.Lock()
	c.offset, c.known = offset, true
	c.mu.Unlock()
	if c.onObserve != nil {
		c.onObserve(offset)
	}
	return offset, true
}

// Offset is Maskinporten's time minus the local time, as last observed;
// known is false before any answer carried a usable Date.
func (c *Clock) Offset() (d time.Duration, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.known
}

// Correction is what Now adds to the local time: the offset when it is
// known and its size exceeds the threshold, else 0.
func (c *Clock) Correction() time.Duration {
	d, known := c.Offset()
	if !known || (d <= c.threshold && d >= -c.threshold) {
		return 0
	}
	return d
}

// Threshold is the offset beyond which Now follows Maskinporten's clock.
func (c *Clock) Threshold() time.Duration { return c.threshold }

// Now is the time to put in a grant: the local time plus the Correction.
// Give it to a GrantBuilder as GrantOptions.Now.
func (c *Clock) Now() time.Time { return c.local().Add(c.Correction()) }

// Moved reports whether the Correction differs from before by more than
// the threshold (and at least a second, Date's resolution): whether a
// grant made with the correction before would be made differently enough
// now to be worth another try after an MP-130 refusal.
func (c *Clock) Moved(before time.Duration) bool {
	d := c.Correction() - before
	if d < 0 {
		d = -d
	}
	return d > max(c.threshold, time.Second)
}

// IsClockRefusal reports whether err is Maskinporten refusing a grant for
// its times (invalid_grant, MP-130): an iat too far from its clock, or an
// expired grant. A grant made on a corrected clock may pass.
func IsClockRefusal(err error) bool {
	var mpErr *Error
	return errors.As(err, &mpErr) && mpErr.MPCode == "MP-130" && (mpErr.Code == "invalid_grant" || mpErr.Code == "")
}
