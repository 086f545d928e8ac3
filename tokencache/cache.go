package tokencache

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/singleflight"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/maskinporten"
)

// Fetcher makes exactly one attempt at a new token for a key: it signs one
// grant, records it and posts it once. The cache does the retrying. ctx's
// deadline is what is left of the fetch's budget (FetchTimeout).
type Fetcher func(ctx context.Context, key Key) (maskinporten.Token, error)

// Options tune a Cache. Zero values take the defaults.
type Options struct {
	// RefreshMargin: a token is refreshed when its validity left falls
	// below the largest min validity asked of it plus this margin (or
	// plus half of the rest of its lifetime, if that is less). Default 30 s.
	RefreshMargin time.Duration
	// ErrorBackoff is how long a failed fetch is remembered, growing with
	// consecutive failures of the key: callers get the same error
	// meanwhile instead of another signature. Default 2 s up to 30 s.
	ErrorBackoff backoff.Policy
	// MaxAttempts bounds the attempts of one fetch. Only temporary
	// failures (maskinporten.IsTemporary) are tried again. Default 4.
	MaxAttempts int
	// Retry is the wait between attempts; a longer Retry-After from the
	// server wins. Default 200 ms up to 5 s.
	Retry backoff.Policy
	// FetchTimeout bounds all attempts of one fetch together, which no
	// single caller's cancellation stops (others may wait for it). Default
	// 15 s: one request timeout of 10 s plus one back-off.
	FetchTimeout time.Duration
	// MaxEntries bounds the cache; the least recently used key goes first.
	// Default 10 000.
	MaxEntries int
	// Breaker configures the per-environment circuit breaker.
	Breaker BreakerOptions
	// OnBreaker, when set, is told of each change of an environment's
	// breaker between closed (open false) and open or half-open (open
	// true). It is called outside the cache's lock.
	OnBreaker func(environment string, open bool)
	// Clock reads the time and makes the timers. Default the real clock.
	Clock clockwork.Clock
}

// Cache is a token cache. It is safe for concurrent use. Close it to stop
// its timers and background fetches.
type Cache struct {
	fetch Fetcher
	opts  Options
	clock clockwork.Clock

	// root is the parent of every fetch's context: Close cancels it.
	root       context.Context
	cancelRoot context.CancelFunc

	mu       sync.Mutex
	closed   bool
	entries  map[Key]*list.Element // of *entry
	lru      *list.List            // front: most recently used
	breakers map[string]*breaker
	flights  uint64 // fetches started, to name each flight
	flight   singleflight.Group

	// notifyMu orders OnBreaker calls; reported is what they last said.
	notifyMu sync.Mutex
	reported map[string]bool

	wg        sync.WaitGroup // the goroutines the cache started
	running   atomic.Int64   // the same, counted for Close's error
	closeOnce sync.Once
	done      chan struct{} // closed when wg is done after Close

	stats counters
}

// entry is one key's state; see the package documentation. c.mu guards it.
type entry struct {
	key Key

	token    maskinporten.Token
	hasToken bool
	tokenSeq uint64        // counts tokens stored, so a late hand-out can tell it is stale
	lifetime time.Duration // ExpiresIn of the last token fetched: 0 until one is
	want     time.Duration // largest min validity asked of token
	handed   bool          // token was handed out

	flight *flight // the fetch in flight, or nil

	timer    clockwork.Timer // the scheduled refresh, or nil
	timerAt  time.Time
	timerSeq uint64 // tells a timer that fired late that it was replaced

	err      error // the last fetch's failure, until errUntil
	errUntil time.Time
	failures int // consecutive failed fetches
}

// Stats counts what the cache did, for metrics.
type Stats struct {
	// Hits are tokens handed out from the cache; Misses are calls that
	// waited for a fetch.
	Hits, Misses uint64
	// Refreshes are background fetches, RefreshFailures those that failed.
	Refreshes, RefreshFailures uint64
	Evictions                  uint64
	// Attempts are calls of the Fetcher.
	Attempts uint64
	// BreakerOpens counts openings of any environment's breaker.
	BreakerOpens uint64
}

type counters struct {
	hits, misses, refreshes, refreshFailures, evictions, attempts, breakerOpens atomic.Uint64
}

// The wait between the attempts of a fetch when Options say nothing.
const (
	DefaultRetryInitial = 200 * time.Millisecond
	DefaultRetryMax     = 5 * time.Second
)

// New makes a cache that fetches with fetch.
func New(fetch Fetcher, opts Options) *Cache {
	if opts.RefreshMargin == 0 {
		opts.RefreshMargin = 30 * time.Second
	}
	opts.ErrorBackoff = withDefaults(opts.ErrorBackoff, 2*time.Second, 30*time.Second)
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 4
	}
	opts.Retry = withDefaults(opts.Retry, DefaultRetryInitial, DefaultRetryMax)
	if opts.FetchTimeout == 0 {
		opts.FetchTimeout = 15 * time.Second
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = 10_000
	}
	if opts.Breaker.Threshold == 0 {
		opts.Breaker.Threshold = 3
	}
	opts.Breaker.CoolDown = withDefaults(opts.Breaker.CoolDown, time.Second, 30*time.Second)
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	root, cancel := context.WithCancel(context.Background())
	return &Cache{
		fetch: fetch, opts: opts, clock: opts.Clock,
		root: root, cancelRoot: cancel,
		entries: map[Key]*list.Element{}, lru: list.New(),
		breakers: map[string]*breaker{}, reported: map[string]bool{},
		done: make(chan struct{}),
	}
}

func withDefaults(p backoff.Policy, initial, maxWait time.Duration) backoff.Policy {
	if p.Initial == 0 {
		p.Initial = initial
	}
	if p.Max == 0 {
		p.Max = max(maxWait, p.Initial)
	}
	return p
}

// Get returns a token for key with more than minValidity left. A cached
// token is returned at once (and refreshed in the background ahead of its
// refresh point); otherwise the caller waits for the one fetch in flight
// for the key, or until ctx ends. Errors of temporary conditions carry
// advice (RetryAfter).
func (c *Cache) Get(ctx context.Context, key Key, minValidity time.Duration) (maskinporten.Token, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return maskinporten.Token{}, ErrClosed
	}
	e := c.touch(key)
	if e.lifetime > 0 && minValidity > e.lifetime/2 {
		// Refuse rather than sign again and again for a request that
		// cannot be met.
		c.mu.Unlock()
		return maskinporten.Token{}, &TooShortError{Asked: minValidity, Longest: e.lifetime / 2}
	}
	now := c.clock.Now()
	if tok, ok := e.usable(now, minValidity); ok {
		c.handOut(ctx, e, now, minValidity)
		c.mu.Unlock()
		c.stats.hits.Add(1)
		return tok, nil
	}
	// The fetch is not cancelled with this caller: others may be waiting
	// for it, and a token fetched is worth keeping.
	var ch <-chan singleflight.Result
	if e.flight != nil {
		ch = c.flight.DoChan(e.flight.key, e.flight.fn) // joins it
	} else if err := c.refusal(e, now); err != nil {
		c.mu.Unlock()
		return maskinporten.Token{}, err
	} else {
		ch = c.startFetch(ctx, e, false)
	}
	c.mu.Unlock()
	c.stats.misses.Add(1)

	var res singleflight.Result
	select {
	case <-ctx.Done():
		return maskinporten.Token{}, fmt.Errorf("waiting for a token: %w", ctx.Err())
	case <-c.root.Done():
		return maskinporten.Token{}, fmt.Errorf("waiting for a token: %w", ErrClosed)
	case res = <-ch:
	}
	if res.Err != nil {
		return maskinporten.Token{}, res.Err
	}
	got := res.Val.(fetched)
	now = c.clock.Now()
	if longest := got.tok.ExpiresIn / 2; minValidity > longest {
		return maskinporten.Token{}, &TooShortError{Asked: minValidity, Longest: longest}
	}
	if left := got.tok.Remaining(now); left <= minValidity {
		return maskinporten.Token{}, &TooShortError{Asked: minValidity, Longest: max(left, 0) / 2}
	}
	c.mu.Lock()
	if !c.closed && c.current(e) && e.tokenSeq == got.seq {
		c.handOut(ctx, e, now, minValidity)
	}
	c.mu.Unlock()
	return got.tok, nil
}

// GetCached hands out the token the cache holds for key, if it has more
// than minValidity left, without ever fetching one: ok is false, and accept
// is not called, when there is none (Get then gets one). accept is called
// with the token before it is handed out, outside the cache's lock, and
// may refuse it with an error, which GetCached returns: the token service
// writes the request's audit record there, so that a token is never
// handed out before it is on record. Only a token accepted counts as a hit
// and may start or schedule the refresh of its token, so that the
// refresh's signature comes after the record of the hit that caused it.
func (c *Cache) GetCached(ctx context.Context, key Key, minValidity time.Duration, accept func(maskinporten.Token) error) (tok maskinporten.Token, ok bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return maskinporten.Token{}, false, ErrClosed
	}
	var e *entry
	var seq uint64
	if el, found := c.entries[key]; found {
		e = el.Value.(*entry)
		if e.lifetime == 0 || minValidity <= e.lifetime/2 {
			tok, ok = e.usable(c.clock.Now(), minValidity)
			seq = e.tokenSeq
		}
	}
	c.mu.Unlock()
	if !ok {
		return maskinporten.Token{}, false, nil
	}
	if err := accept(tok); err != nil {
		return maskinporten.Token{}, false, err
	}
	c.mu.Lock()
	if !c.closed && c.current(e) {
		c.lru.MoveToFront(c.entries[key])
		// The entry may hold a newer token by now, not handed out yet:
		// only the token handed out is scheduled for refresh.
		if e.tokenSeq == seq {
			c.handOut(ctx, e, c.clock.Now(), minValidity)
		}
	}
	c.mu.Unlock()
	c.stats.hits.Add(1)
	return tok, true, nil
}

// usable returns e's token when it has more than minValidity left.
func (e *entry) usable(now time.Time, minValidity time.Duration) (maskinporten.Token, bool) {
	if left := e.token.Remaining(now); e.hasToken && left > minValidity && left > 0 {
		return e.token, true
	}
	return maskinporten.Token{}, false
}

// backedOff reports whether e's last failure is still remembered.
func (e *entry) backedOff(now time.Time) bool { return e.err != nil && now.Before(e.errUntil) }

// refusal is why no fetch may start for e now: its back-off, or its
// environment's breaker. c.mu must be held.
func (c *Cache) refusal(e *entry, now time.Time) error {
	if e.backedOff(now) {
		return &retryLater{err: e.err, after: e.errUntil.Sub(now)}
	}
	return c.breakerRefusal(e.key.Environment, now)
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
		oldest := c.lru.Remove(c.lru.Back()).(*entry)
		delete(c.entries, oldest.key)
		// A fetch in flight for it completes into the orphan entry: its
		// waiters get the token, the cache does not keep it.
		c.stopTimer(oldest)
		c.stats.evictions.Add(1)
	}
	return e
}

// current reports whether e is still the entry of its key (not evicted).
// c.mu must be held.
func (c *Cache) current(e *entry) bool {
	el, ok := c.entries[e.key]
	return ok && el.Value == e
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(),
		Refreshes: c.stats.refreshes.Load(), RefreshFailures: c.stats.refreshFailures.Load(),
		Evictions: c.stats.evictions.Load(),
		Attempts:  c.stats.attempts.Load(), BreakerOpens: c.stats.breakerOpens.Load(),
	}
}

// Len is the number of keys cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Format prints the cache as its size only, under every verb: it holds
// access tokens, and printing it must neither show them nor read its
// state without its lock.
func (c *Cache) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "tokencache.Cache{keys: %d}", c.Len())
}
