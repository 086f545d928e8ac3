package tokencache

import (
	"context"
	"time"
)

// refreshAt is the refresh point of e's token: the time its validity left
// falls to want + min(RefreshMargin, (lifetime-want)/2). Refreshing there
// leaves every caller who asks as much as before a token to be handed at
// once; half the rest of the lifetime, for short-lived tokens, keeps a
// token from being refreshed on every hit.
func (c *Cache) refreshAt(e *entry) time.Time {
	lifetime := e.token.ExpiresIn
	ahead := e.want + min(c.opts.RefreshMargin, max(lifetime-e.want, 0)/2)
	return e.token.ExpiresAt.Add(-ahead)
}

// handOut notes that e's token is handed out to a caller who asked for
// minValidity, and makes sure it will be refreshed: at once when it is
// past its refresh point, else by a timer at that point. Scheduling on
// hand-out, not on hits alone, serves a caller who comes back only when
// its own copy is about to expire. c.mu must be held and the cache open.
func (c *Cache) handOut(ctx context.Context, e *entry, now time.Time, minValidity time.Duration) {
	e.handed = true
	e.want = max(e.want, minValidity)
	if e.flight != nil {
		// A fetch replaces the token; its first hand-out schedules the next.
		return
	}
	at := c.refreshAt(e)
	if !now.Before(at) {
		if c.refusal(e, now) == nil {
			c.startFetch(ctx, e, true)
			return
		}
		at = c.nextChance(e, now)
	}
	c.schedule(ctx, e, at)
}

// nextChance is when a refresh refused now may go: after e's back-off and
// the breaker's cool-down. c.mu must be held.
func (c *Cache) nextChance(e *entry, now time.Time) time.Time {
	at := now
	if e.backedOff(now) {
		at = e.errUntil
	}
	if after, ok := RetryAfter(c.breakerRefusal(e.key.Environment, now)); ok {
		at = maxTime(at, now.Add(after))
	}
	return at
}

// schedule sets e's refresh timer to at, unless it is set earlier already
// or e's token will have expired by then (the next caller fetches anyway).
// The refresh runs with ctx's values: the audit names the caller whose
// hand-out scheduled it. c.mu must be held.
func (c *Cache) schedule(ctx context.Context, e *entry, at time.Time) {
	if c.closed || !c.current(e) || !e.hasToken || !at.Before(e.token.ExpiresAt) {
		return
	}
	if e.timer != nil && !at.Before(e.timerAt) {
		return
	}
	c.stopTimer(e)
	e.timerSeq++
	seq, values := e.timerSeq, context.WithoutCancel(ctx)
	e.timerAt = at
	e.timer = c.clock.AfterFunc(max(at.Sub(c.clock.Now()), 0), func() { c.timerFired(values, e, seq) })
}

// stopTimer stops e's refresh timer. c.mu must be held.
func (c *Cache) stopTimer(e *entry) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

// timerFired starts the refresh scheduled for e, or puts it off while a
// back-off or the breaker refuses it.
func (c *Cache) timerFired(ctx context.Context, e *entry, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || e.timerSeq != seq || e.timer == nil || !c.current(e) {
		return // stopped or replaced after it fired
	}
	e.timer = nil
	now := c.clock.Now()
	if e.flight != nil || !e.hasToken {
		return
	}
	if c.refusal(e, now) != nil {
		c.schedule(ctx, e, c.nextChance(e, now))
		return
	}
	c.startFetch(ctx, e, true)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
