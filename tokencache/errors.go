package tokencache

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

var (
	// ErrTooShort means no token Maskinporten issues for the key can have
	// the validity asked for. The error is a *TooShortError.
	ErrTooShort = errors.New("token validity shorter than asked for")
	// ErrCircuitOpen means recent attempts against the key's environment
	// failed, and the cache makes none until the breaker's cool-down ends.
	ErrCircuitOpen = errors.New("circuit open: recent attempts to reach Maskinporten failed")
	// ErrClosed means the cache was closed.
	ErrClosed = errors.New("token cache closed")
)

// TooShortError refuses a min validity that the key's tokens cannot meet:
// a token is refreshed before its validity falls below what callers ask,
// so asking more than half a token's lifetime would cost a fetch on every
// call.
type TooShortError struct {
	// Asked is the min validity asked for.
	Asked time.Duration
	// Longest is the longest min validity allowed: half the lifetime of
	// the key's tokens.
	Longest time.Duration
}

func (e *TooShortError) Error() string {
	// Asked in seconds, as callers give it; the lifetime as a duration.
	return fmt.Sprintf("min_validity %ss cannot be met: Maskinporten issues tokens valid for %s here, so the longest min_validity allowed is %s",
		strconv.FormatFloat(e.Asked.Seconds(), 'f', -1, 64), 2*e.Longest, e.Longest)
}

// Is makes errors.Is(err, ErrTooShort) hold.
func (e *TooShortError) Is(target error) bool { return target == ErrTooShort }

// retryLater is an error of a temporary condition with the time after
// which asking again may succeed.
type retryLater struct {
	err   error
	after time.Duration
}

func (r *retryLater) Error() string {
	return fmt.Sprintf("%v (retry in %s)", r.err, r.after.Round(time.Millisecond))
}

func (r *retryLater) Unwrap() error { return r.err }

// RetryAfter returns the retry advice err carries: how long until asking
// again may succeed (the end of a back-off, of a breaker's cool-down, or
// a server's Retry-After). ok is false for errors without advice.
func RetryAfter(err error) (after time.Duration, ok bool) {
	var r *retryLater
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

// withoutAdvice is err without its outermost advice, so that advice is not
// wrapped in advice.
func withoutAdvice(err error) error {
	if r, ok := err.(*retryLater); ok {
		return r.err
	}
	return err
}
