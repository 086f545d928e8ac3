// Package backoff is Portvakt's one back-off: exponential, capped, with
// full jitter, for every retry against a shared service (Maskinporten, an
// HSM). Full jitter keeps many callers, or several daemons on one network
// HSM, from retrying in lockstep.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential back-off with full jitter.
type Policy struct {
	// Initial bounds the wait after the first failure.
	Initial time.Duration
	// Max caps every wait.
	Max time.Duration
}

// Delay is how long to wait after the attempt-th failure (1 for the
// first): a random duration up to Initial·2^(attempt-1), capped at Max,
// and at least a millisecond.
func (p Policy) Delay(attempt int) time.Duration {
	limit := p.Max
	if attempt >= 1 && attempt < 63 {
		if d := p.Initial << (attempt - 1); d > 0 && d < limit {
			limit = d
		}
	}
	if limit <= 0 {
		return time.Millisecond
	}
	return rand.N(limit) + time.Millisecond
}

// Jitter spreads a wait someone advised (a server's RetryInfo): d/2 plus a
// random part of d/2, so that the callers it told do not all come back at
// once, and none much sooner than told.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
