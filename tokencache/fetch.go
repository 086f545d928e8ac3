package tokencache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/singleflight"

	"github.com/portvakt/portvakt/maskinporten"
)

// flight is the one fetch in flight for an entry. Callers join it with
// c.flight.DoChan(key, fn); fn runs once, for the caller that started it.
type flight struct {
	key string
	fn  func() (any, error)
}

// fetched is a flight's result: the token and its number in the entry.
type fetched struct {
	tok maskinporten.Token
	seq uint64
}

// startFetch starts e's fetch: for a caller that waits (a miss) or in the
// background (a refresh), and returns the starter's channel for its
// result. c.mu must be held and the cache open.
//
// Each flight has a key of its own (the key and a number): a flight of an
// entry evicted meanwhile is then never joined by the next entry of the
// key, and fn runs exactly once for each flight started, which keeps the
// count of the cache's goroutines exact.
func (c *Cache) startFetch(ctx context.Context, e *entry, background bool) <-chan singleflight.Result {
	c.stopTimer(e)
	c.flights++
	fctx, release := c.detach(ctx)
	f := &flight{key: e.key.flightKey() + "\x00" + strconv.FormatUint(c.flights, 10)}
	f.fn = func() (any, error) {
		defer c.running.Add(-1)
		defer c.wg.Done()
		defer release()
		return c.runFetch(fctx, e, background)
	}
	e.flight = f
	c.wg.Add(1)
	c.running.Add(1)
	return c.flight.DoChan(f.key, f.fn)
}

// detach is ctx's values with the cache's cancellation: a fetch outlives
// the caller that started it (others may wait for it), not the cache. The
// audit of the fetch's signature names that caller.
func (c *Cache) detach(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(c.root, cancel)
	return ctx, func() { stop(); cancel() }
}

// runFetch fetches e's token and moves e to its next state: fresh with the
// new token, or backed-off with the error.
func (c *Cache) runFetch(ctx context.Context, e *entry, background bool) (any, error) {
	tok, attempted, err := c.attempts(ctx, e.key)
	c.mu.Lock()
	now := c.clock.Now()
	e.flight = nil
	var res fetched
	switch {
	case err == nil:
		e.token, e.hasToken, e.lifetime = tok, true, tok.ExpiresIn
		e.want, e.handed = 0, false
		e.err, e.errUntil, e.failures = nil, time.Time{}, 0
		e.tokenSeq++
		res = fetched{tok: tok, seq: e.tokenSeq}
	case c.closed || !attempted:
		// Nothing learnt of the key: the cache stops, or the breaker
		// refused the first attempt and answers callers itself.
	default:
		e.failures++
		wait := max(c.opts.ErrorBackoff.Delay(e.failures), maskinporten.RetryAfter(err))
		if after, ok := RetryAfter(err); ok {
			wait = max(wait, after)
		}
		e.err, e.errUntil = withoutAdvice(err), now.Add(wait)
		err = &retryLater{err: e.err, after: wait}
		if e.handed {
			// Try again when the back-off ends, while the token handed
			// out is still valid.
			c.schedule(ctx, e, e.errUntil)
		}
	}
	c.mu.Unlock()
	if background {
		c.stats.refreshes.Add(1)
		if err != nil {
			c.stats.refreshFailures.Add(1)
		}
	}
	return res, err
}

// attempts is one fetch: up to MaxAttempts calls of the Fetcher within
// FetchTimeout, each let through by the environment's breaker. attempted
// is false when the breaker refused the first.
func (c *Cache) attempts(ctx context.Context, key Key) (tok maskinporten.Token, attempted bool, err error) {
	env := key.Environment
	deadline := c.clock.Now().Add(c.opts.FetchTimeout)
	var last error
	for n := 1; ; n++ {
		probe, refused := c.admit(env)
		if refused != nil {
			if last == nil {
				return maskinporten.Token{}, false, refused
			}
			return maskinporten.Token{}, true, gaveUp(refused, last)
		}
		actx, cancel := withDeadline(ctx, c.clock, deadline)
		tok, err := c.fetch(actx, key)
		cancel()
		c.stats.attempts.Add(1)
		c.settle(env, probe, err, ctx.Err() != nil)
		if err == nil {
			return tok, true, nil
		}
		last = err
		if !maskinporten.IsTemporary(err) || ctx.Err() != nil || n >= c.opts.MaxAttempts {
			return maskinporten.Token{}, true, err
		}
		wait := max(c.opts.Retry.Delay(n), maskinporten.RetryAfter(err))
		if c.clock.Now().Add(wait).After(deadline) {
			return maskinporten.Token{}, true, err
		}
		c.mu.Lock()
		refused = c.breakerRefusal(env, c.clock.Now())
		opened := c.breakerFor(env).opened
		c.mu.Unlock()
		if refused != nil {
			return maskinporten.Token{}, true, gaveUp(refused, err)
		}
		if !c.sleep(ctx, wait, opened) {
			return maskinporten.Token{}, true, err
		}
	}
}

// gaveUp is the error of a fetch whose retry the breaker refused: both
// ErrCircuitOpen and the last attempt's error, with the breaker's advice.
func gaveUp(refused, last error) error {
	after, _ := RetryAfter(refused)
	return &retryLater{err: fmt.Errorf("%w; last attempt: %w", withoutAdvice(refused), last), after: after}
}

// sleep waits d on the cache's clock. It ends early, returning true, when
// wake is closed (the breaker opened: the next attempt is refused at once
// rather than after the wait), and returns false when ctx ends.
func (c *Cache) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := c.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// deadlineCtx is context.WithDeadline on the cache's clock, so that a fake
// clock in tests moves the deadline of an attempt too. (clockwork's own
// WithDeadline blocks in Err until the context is done.)
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func withDeadline(parent context.Context, clk clockwork.Clock, deadline time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	t := clk.AfterFunc(clk.Until(deadline), func() { cancel(context.DeadlineExceeded) })
	return &deadlineCtx{Context: ctx, deadline: deadline}, func() { t.Stop(); cancel(context.Canceled) }
}

func (d *deadlineCtx) Deadline() (time.Time, bool) { return d.deadline, true }

func (d *deadlineCtx) Err() error {
	err := d.Context.Err()
	if err != nil && errors.Is(context.Cause(d.Context), context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}
