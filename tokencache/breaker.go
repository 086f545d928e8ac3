package tokencache

import (
	"errors"
	"fmt"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/maskinporten"
)

// BreakerOptions configure the per-environment circuit breaker.
type BreakerOptions struct {
	// Threshold is the count of consecutive temporary failures of attempts
	// (across the environment's keys) that opens the breaker. Default 3.
	Threshold int
	// CoolDown is how long the breaker stays open, growing with each
	// consecutive opening. Default 1 s up to 30 s.
	CoolDown backoff.Policy
}

// breaker is one environment's circuit breaker; c.mu guards it. Open past
// its cool-down is half-open: it is not a state of its own, so that no
// timer is needed to get there.
type breaker struct {
	open     bool
	until    time.Time // end of the cool-down, when open
	probing  bool      // half-open: the one attempt allowed is out
	failures int       // consecutive temporary failures while closed
	openings int       // consecutive openings, for the cool-down
	// opened is closed when the breaker opens, to wake fetches waiting to
	// retry: their retry would be refused anyway. nil while open.
	opened chan struct{}
}

// breakerFor returns env's breaker, making a closed one. c.mu must be held.
func (c *Cache) breakerFor(env string) *breaker {
	b := c.breakers[env]
	if b == nil {
		b = &breaker{opened: make(chan struct{})}
		c.breakers[env] = b
	}
	return b
}

// breakerRefusal is env's breaker's refusal of an attempt now, with the
// time until it may let one through, or nil. c.mu must be held.
func (c *Cache) breakerRefusal(env string, now time.Time) error {
	b := c.breakers[env]
	switch {
	case b == nil || !b.open:
		return nil
	case now.Before(b.until):
		return &retryLater{err: fmt.Errorf("%w for environment %s", ErrCircuitOpen, env), after: b.until.Sub(now)}
	case b.probing:
		// Half-open with the probe out: it decides within a fetch's
		// budget; ask again after the shortest cool-down.
		return &retryLater{err: fmt.Errorf("%w for environment %s (probing)", ErrCircuitOpen, env), after: c.opts.Breaker.CoolDown.Initial}
	}
	return nil
}

// admit lets an attempt through env's breaker, or refuses it; probe is
// true for the one attempt of a half-open breaker.
func (c *Cache) admit(env string) (probe bool, refused error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if refused := c.breakerRefusal(env, c.clock.Now()); refused != nil {
		return false, refused
	}
	if b := c.breakerFor(env); b.open {
		b.probing = true
		return true, nil
	}
	return false, nil
}

// settle counts an attempt's outcome in env's breaker. A temporary failure
// (unreachable, timeout, 429, 5xx) counts; any other answer from
// Maskinporten, or a token, shows it answers and closes the breaker;
// other errors (HSM, audit) and attempts cut short by Close say nothing
// of Maskinporten.
func (c *Cache) settle(env string, probe bool, err error, cancelled bool) {
	c.mu.Lock()
	b := c.breakerFor(env)
	if probe {
		b.probing = false
	}
	var answer *maskinporten.Error
	switch {
	case cancelled:
	case err != nil && maskinporten.IsTemporary(err):
		b.failures++
		if probe || (!b.open && b.failures >= c.opts.Breaker.Threshold) {
			c.openBreaker(b)
		}
	case err == nil || errors.As(err, &answer):
		b.failures = 0
		if b.open {
			b.open, b.openings, b.opened = false, 0, make(chan struct{})
		}
	}
	c.mu.Unlock()
	c.notify(env)
}

// openBreaker opens b (again) for the next cool-down. c.mu must be held.
func (c *Cache) openBreaker(b *breaker) {
	b.openings++
	b.until = c.clock.Now().Add(c.opts.Breaker.CoolDown.Delay(b.openings))
	b.failures = 0
	if !b.open {
		b.open = true
		close(b.opened)
		b.opened = nil
	}
	c.stats.breakerOpens.Add(1)
}

// notify tells OnBreaker of a change of env's breaker, outside c.mu.
// Reading the state under notifyMu, not passing it from the change, keeps
// reports of changes that race in order: the last one is the state.
func (c *Cache) notify(env string) {
	if c.opts.OnBreaker == nil {
		return
	}
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	open := c.BreakerOpen(env)
	if open == c.reported[env] {
		return
	}
	c.reported[env] = open
	c.opts.OnBreaker(env, open)
}

// BreakerOpen reports whether env's breaker is open or half-open: not
// closed again by a probe's success. While it is, callers of env without a
// cached token are refused, but for the one probe of a half-open breaker.
func (c *Cache) BreakerOpen(env string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.breakers[env]
	return b != nil && b.open
}
