package signer

import (
	"math/rand/v2"
	"time"
)

// Backoff is an exponential back-off with full jitter: the one used for
// reconnecting to a lost token and for waiting on a busy one.
type Backoff struct {
	// Initial is the wait before the second attempt (the first is at once).
	// Default 100 ms.
	Initial time.Duration
	// Max caps the wait. Default 30 s.
	Max time.Duration
}

// next returns how long to wait now, and the cap for the wait after it.
// Full jitter keeps several daemons on one network HSM from retrying in
// lockstep.
func (b Backoff) next(cap time.Duration) (wait, nextCap time.Duration) {
	if cap <= 0 {
		cap = b.Initial
	}
	return rand.N(cap) + time.Millisecond, min(2*cap, b.Max)
}
