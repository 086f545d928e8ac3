package tokencache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/portvakt/portvakt/maskinporten"
)

// Fetcher obtains a new token for a key: it signs a grant and posts it.
type Fetcher func(ctx context.Context, key Key) (maskinporten.Token, error)

// Options tune a Cache.
type Options struct {
	// RefreshMargin: a token with less validity left is refreshed in the
	// background while it is still handed out. Default 30 s.
	RefreshMargin time.Duration
	// ErrorBackoff is how long a failed fetch is remembered: callers get
	// the same error meanwhile instead of another signature. Default 2 s.
	ErrorBackoff time.Duration
	// FetchTimeout bounds one fetch, which no single caller's cancellation
	// stops (others may wait for it). Default 45 s.
	FetchTimeout time.Duration
	// MaxEntries bounds the cache; the least recently used key goes first.
	// Default 10 000.
	MaxEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Cache is a token cache. It is safe for concurrent use.
type Cache struct {
	fetch Fetcher
	opts  Options

	mu      sync.Mutex
	entries map[Key]*list.Element // of *entry
	lru     *list.List            // front: most recently used
	flight  singleflight.Group

	stats counters
}

type entry struct {
	key        Key
	token      maskinporten.Token
	hasToken   bool
	err        error
	errUntil   time.Time
	refreshing bool
}

// Stats counts what the cache did, for metrics.
type Stats struct {
	Hits, Misses, Refreshes, RefreshFailures, Evictions uint64
}

type counters struct {
	hits, misses, refreshes, refreshFailures, evictions atomic.Uint64
}

// New makes a cache that fetches with fetch.
func New(fetch Fetcher, opts Options) *Cache {
	if opts.RefreshMargin == 0 {
		opts.RefreshMargin = 30 * time.Second
	}
	if opts.ErrorBackoff == 0 {
		opts.ErrorBackoff = 2 * time.Second
	}
	if opts.FetchTimeout == 0 {
		opts.FetchTimeout = 45 * time.Second
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{fetch: fetch, opts: opts, entries: map[Key]*list.Element{}, lru: list.New()}
}

// ErrTooShort means a fresh token is valid for less than the caller asked.
var ErrTooShort = errors.New("token validity shorter than asked for")

// Get returns a token for key with at least minValidity left. A cached
// token is returned at once (and refreshed in the background when it is
// near expiry); otherwise the caller waits for the one fetch in flight
// for the key, or until ctx ends.
func (c *Cache) Get(ctx context.Context, key Key, minValidity time.Duration) (maskinporten.Token, error) {
	now := c.opts.Now()
	c.mu.Lock()
	e := c.touch(key)
	if e.hasToken && e.token.ExpiresIn <= minValidity {
		// Even a fresh token would be too short: refuse rather than sign
		// again and again for a request that cannot be met.
		lifetime := e.token.ExpiresIn
		c.mu.Unlock()
		return maskinporten.Token{}, fmt.Errorf("%w: Maskinporten issues tokens valid for %s here, and %s was asked for", ErrTooShort, lifetime, minValidity)
	}
	if tok, ok := c.usable(e, now, minValidity); ok {
		c.refreshIfDue(ctx, key, e, now)
		c.mu.Unlock()
		c.stats.hits.Add(1)
		return tok, nil
	}
	if e.err != nil && now.Before(e.errUntil) {
		err := e.err
		c.mu.Unlock()
		return maskinporten.Token{}, err
	}
	c.mu.Unlock()
	c.stats.misses.Add(1)

	// The fetch is not cancelled with this caller: others may be waiting
	// for it, and a token fetched is worth keeping. It keeps the caller's
	// values (request id, identity), which the audit of the signature names.
	fetchCtx := context.WithoutCancel(ctx)
	ch := c.flight.DoChan(key.flightKey(), func() (any, error) {
		return c.fetchAndStore(fetchCtx, key)
	})
	select {
	case <-ctx.Done():
		return maskinporten.Token{}, fmt.Errorf("waiting for a token: %w", ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return maskinporten.Token{}, res.Err
		}
		tok := res.Val.(maskinporten.Token)
		if left := tok.Remaining(c.opts.Now()); left <= minValidity {
			return maskinporten.Token{}, fmt.Errorf("%w: Maskinporten issued a token valid for %s, and %s was asked for", ErrTooShort, left.Round(time.Second), minValidity)
		}
		return tok, nil
	}
}

// GetCached hands out the token the cache holds for key, if it has more
// than minValidity left, without ever fetching one: ok is false, and accept
// is not called, when there is none (Get then gets one). accept is called
// with the token before it is handed out, outside the cache's lock, and
// may refuse it with an error, which GetCached returns: the token service
// writes the request's audit record there, so that a token is never
// handed out before it is on record. Only a token accepted counts as a hit
// and may start the refresh of a token near expiry, so that the refresh's
// signature comes after the record of the hit that caused it.
func (c *Cache) GetCached(ctx context.Context, key Key, minValidity time.Duration, accept func(maskinporten.Token) error) (tok maskinporten.Token, ok bool, err error) {
	c.mu.Lock()
	el, found := c.entries[key]
	if found {
		tok, ok = c.usable(el.Value.(*entry), c.opts.Now(), minValidity)
	}
	c.mu.Unlock()
	if !ok {
		return maskinporten.Token{}, false, nil
	}
	if err := accept(tok); err != nil {
		return maskinporten.Token{}, false, err
	}
	c.mu.Lock()
	if el, found := c.entries[key]; found {
		e := el.Value.(*entry)
		c.lru.MoveToFront(el)
		// The entry may hold a newer token by now; refresh only if it too
		// is due, and only once.
		if e.hasToken {
			c.refreshIfDue(ctx, key, e, c.opts.Now())
		}
	}
	c.mu.Unlock()
	c.stats.hits.Add(1)
	return tok, true, nil
}

// usable returns e's token when it has more than minValidity left. c.mu
// must be held.
func (c *Cache) usable(e *entry, now time.Time, minValidity time.Duration) (maskinporten.Token, bool) {
	if left := e.token.Remaining(now); e.hasToken && left > minValidity && left > 0 {
		return e.token, true
	}
	return maskinporten.Token{}, false
}

// refreshIfDue starts a background refresh of e's token when it is near
// expiry and none is running. c.mu must be held.
func (c *Cache) refreshIfDue(ctx context.Context, key Key, e *entry, now time.Time) {
	if e.token.Remaining(now) < c.refreshPoint(e.token) && !e.refreshing {
		e.refreshing = true
		go c.refresh(context.WithoutCancel(ctx), key)
	}
}

// refreshPoint is the validity left below which a token is refreshed: the
// margin, or half the token's life for tokens shorter than twice the margin,
// so that a short-lived token is not refreshed on every hit.
func (c *Cache) refreshPoint(tok maskinporten.Token) time.Duration {
	return min(c.opts.RefreshMargin, tok.ExpiresIn/2)
}

// refresh replaces a token near expiry; callers keep the old one meanwhile.
func (c *Cache) refresh(ctx context.Context, key Key) {
	_, err, _ := c.flight.Do(key.flightKey(), func() (any, error) {
		return c.fetchAndStore(ctx, key)
	})
	c.stats.refreshes.Add(1)
	if err != nil {
		c.stats.refreshFailures.Add(1)
	}
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		el.Value.(*entry).refreshing = false
	}
	c.mu.Unlock()
}

func (c *Cache) fetchAndStore(ctx context.Context, key Key) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
	defer cancel()
	tok, err := c.fetch(ctx, key)
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.touch(key)
	if err != nil {
		// Keep a still valid token: the refresh failed, the token did not.
		e.err, e.errUntil = err, now.Add(c.opts.ErrorBackoff)
		return nil, err
	}
	e.token, e.hasToken, e.err = tok, true, nil
	return tok, nil
}

// touch returns the key's entry, creating it, and marks it recently used.
// c.mu must be held.
func (c *Cache) touch(key Key) *entry {
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	e := &entry{key: key}
	c.entries[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.opts.MaxEntries {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.entries, oldest.Value.(*entry).key)
		c.stats.evictions.Add(1)
	}
	return e
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(),
		Refreshes: c.stats.refreshes.Load(), RefreshFailures: c.stats.refreshFailures.Load(),
		Evictions: c.stats.evictions.Load(),
	}
}

// Len is the number of keys cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
