package tokencache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/secret"
)

// These tests exercise the cache's own logic with a scripted fetcher and
// a hand-moved clock. The tests that run it with grants signed in SoftHSM2
// against the Maskinporten simulator are in maskinporten's integration tests.

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fetcher hands out numbered tokens of a fixed lifetime, counting calls.
type fetcher struct {
	clock    *clock
	lifetime time.Duration
	calls    atomic.Int64
	fail     atomic.Pointer[error]
	gate     chan struct{} // when set, each fetch waits for it
}

func (f *fetcher) fetch(ctx context.Context, key Key) (maskinporten.Token, error) {
	n := f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if err := f.fail.Load(); err != nil {
		return maskinporten.Token{}, *err
	}
	now := f.clock.Now()
	v, _ := secret.New(fmt.Sprintf("token-%d", n))
	return maskinporten.Token{AccessToken: v, TokenType: "Bearer", ExpiresIn: f.lifetime, IssuedAt: now, ExpiresAt: now.Add(f.lifetime)}, nil
}

func newTestCache(lifetime time.Duration) (*Cache, *fetcher, *clock) {
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	f := &fetcher{clock: clk, lifetime: lifetime}
	return New(f.fetch, Options{RefreshMargin: 30 * time.Second, ErrorBackoff: 2 * time.Second, Now: clk.Now, MaxEntries: 3}), f, clk
}

var testKey = NewKey("test", "client", []string{"svv:kjoretoy/ecoc"}, "", "")

func value(t *testing.T, c *Cache, key Key, minValidity time.Duration) string {
	t.Helper()
	tok, err := c.Get(context.Background(), key, minValidity)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken.Reveal()
}

func TestKeyIgnoresScopeOrder(t *testing.T) {
	a := NewKey("prod", "c", []string{"b:x", "a:y", "b:x"}, "r", "974760673")
	b := NewKey("prod", "c", []string{"a:y", "b:x"}, "r", "974760673")
	if a != b || a.Scopes != "a:y b:x" {
		t.Fatalf("keys differ: %+v %+v", a, b)
	}
	if NewKey("prod", "c", []string{"a:y"}, "r", "") == NewKey("prod", "c", []string{"a:y"}, "r", "974760673") {
		t.Fatal("a delegated and an own token share a key")
	}
}

func TestHitAfterMiss(t *testing.T) {
	c, f, _ := newTestCache(120 * time.Second)
	first := value(t, c, testKey, 0)
	if second := value(t, c, testKey, 0); second != first || f.calls.Load() != 1 {
		t.Fatalf("second Get = %s after %d fetches, want the cached %s after 1", second, f.calls.Load(), first)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	c, f, _ := newTestCache(120 * time.Second)
	f.gate = make(chan struct{})
	const callers = 100
	var wg sync.WaitGroup
	got := make([]string, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Get(context.Background(), testKey, 0)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = tok.AccessToken.Reveal()
		}()
	}
	// Let every caller reach the flight before the fetch completes.
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches for %d concurrent callers, want 1", n, callers)
	}
	for i, v := range got {
		if v != "token-1" {
			t.Fatalf("caller %d got %q", i, v)
		}
	}
}

func TestRefreshAheadOfExpiry(t *testing.T) {
	c, f, clk := newTestCache(120 * time.Second)
	value(t, c, testKey, 0)
	clk.Advance(95 * time.Second) // 25 s left: inside the 30 s margin
	if v := value(t, c, testKey, 0); v != "token-1" {
		t.Fatalf("Get inside the margin = %s, want the still valid token-1 at once", v)
	}
	waitFor(t, func() bool { return value(t, c, testKey, 0) == "token-2" })
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one refresh)", n)
	}
	if s := c.Stats(); s.Refreshes != 1 || s.RefreshFailures != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestShortLivedTokensAreNotRefreshedOnEveryHit(t *testing.T) {
	c, f, clk := newTestCache(10 * time.Second) // shorter than the 30 s margin
	value(t, c, testKey, 0)
	clk.Advance(2 * time.Second)
	for range 10 {
		value(t, c, testKey, 0)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches with 8 s of a 10 s token left, want 1", n)
	}
}

func TestFailedRefreshKeepsTheValidToken(t *testing.T) {
	c, f, clk := newTestCache(120 * time.Second)
	value(t, c, testKey, 0)
	boom := errors.New("maskinporten down")
	f.fail.Store(&boom)
	clk.Advance(100 * time.Second)
	value(t, c, testKey, 0) // starts a refresh that fails
	waitFor(t, func() bool { return c.Stats().RefreshFailures == 1 })
	if v := value(t, c, testKey, 0); v != "token-1" {
		t.Fatalf("after a failed refresh Get = %s, want the still valid token-1", v)
	}
}

func TestErrorsAreCachedOnlyForTheBackoff(t *testing.T) {
	c, f, clk := newTestCache(120 * time.Second)
	boom := errors.New("maskinporten down")
	f.fail.Store(&boom)
	for range 5 {
		if _, err := c.Get(context.Background(), testKey, 0); !errors.Is(err, boom) {
			t.Fatalf("Get = %v, want the fetch error", err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches within the back-off, want 1", n)
	}
	f.fail.Store(nil)
	clk.Advance(3 * time.Second)
	if v := value(t, c, testKey, 0); v != "token-2" || f.calls.Load() != 2 {
		t.Fatalf("after the back-off Get = %s with %d fetches", v, f.calls.Load())
	}
}

func TestMinValidity(t *testing.T) {
	c, f, clk := newTestCache(120 * time.Second)
	value(t, c, testKey, 0)
	clk.Advance(60 * time.Second)
	// 60 s left: enough for 30, not for 90.
	if v := value(t, c, testKey, 30*time.Second); v != "token-1" {
		t.Fatalf("min validity 30 s: got %s", v)
	}
	if v := value(t, c, testKey, 90*time.Second); v != "token-2" {
		t.Fatalf("min validity 90 s: got %s, want a fresh token", v)
	}
	_, err := c.Get(context.Background(), testKey, 10*time.Minute)
	if !errors.Is(err, ErrTooShort) {
		t.Fatalf("min validity beyond any token: %v", err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d fetches; an impossible min validity must not fetch", n)
	}
}

func TestWaiterCancellationDoesNotCancelTheFetch(t *testing.T) {
	c, f, _ := newTestCache(120 * time.Second)
	f.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Get(ctx, testKey, 0); errc <- err }()
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v", err)
	}
	close(f.gate)
	waitFor(t, func() bool {
		tok, err := c.Get(context.Background(), testKey, 0)
		return err == nil && tok.AccessToken.Reveal() == "token-1"
	})
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want the first one completed and kept", n)
	}
}

func TestBoundedSize(t *testing.T) {
	c, _, _ := newTestCache(120 * time.Second)
	for i := range 5 {
		value(t, c, NewKey("test", fmt.Sprint(i), []string{"a:b"}, "", ""), 0)
	}
	if c.Len() != 3 || c.Stats().Evictions != 2 {
		t.Fatalf("len %d, evictions %d; want 3 and 2", c.Len(), c.Stats().Evictions)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a speed claim
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGetCached: GetCached hands out only a token the cache already holds,
// after accept took it; it never fetches, and a refused token is neither a
// hit nor the cause of a refresh.
func TestGetCached(t *testing.T) {
	boom := errors.New("not on record")
	tests := []struct {
		name        string
		warm        bool          // a Get first
		advance     time.Duration // then the clock moves
		minValidity time.Duration
		refuse      error // accept's answer
		wantOK      bool
		wantAccept  bool
		wantErr     error
		wantFetches int64 // after any refresh has run
		wantHits    uint64
	}{
		{name: "empty cache", wantFetches: 0},
		{name: "cached token", warm: true, wantOK: true, wantAccept: true, wantFetches: 1, wantHits: 1},
		{name: "refused by accept", warm: true, refuse: boom, wantAccept: true, wantErr: boom, wantFetches: 1},
		{name: "too little validity left", warm: true, minValidity: 2 * time.Minute, wantFetches: 1},
		{name: "expired", warm: true, advance: 121 * time.Second, wantFetches: 1},
		{name: "near expiry: refreshed after it was accepted", warm: true, advance: 95 * time.Second, wantOK: true, wantAccept: true, wantFetches: 2, wantHits: 1},
		{name: "near expiry but refused: no refresh", warm: true, advance: 95 * time.Second, refuse: boom, wantAccept: true, wantErr: boom, wantFetches: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f, clk := newTestCache(120 * time.Second)
			if tt.warm {
				value(t, c, testKey, 0)
			}
			clk.Advance(tt.advance)
			before := c.Stats().Hits
			var accepted string
			tok, ok, err := c.GetCached(context.Background(), testKey, tt.minValidity, func(tok maskinporten.Token) error {
				accepted = tok.AccessToken.Reveal()
				return tt.refuse
			})
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("GetCached = ok %v, err %v; want ok %v, err %v", ok, err, tt.wantOK, tt.wantErr)
			}
			if (accepted != "") != tt.wantAccept {
				t.Fatalf("accept called with %q; want it called: %v", accepted, tt.wantAccept)
			}
			if ok && tok.AccessToken.Reveal() != accepted {
				t.Fatalf("handed out %q after accepting %q", tok.AccessToken.Reveal(), accepted)
			}
			if tt.wantFetches > 1 {
				waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
			}
			if n := f.calls.Load(); n != tt.wantFetches {
				t.Fatalf("%d fetches, want %d", n, tt.wantFetches)
			}
			if hits := c.Stats().Hits - before; hits != tt.wantHits {
				t.Fatalf("%d hits, want %d", hits, tt.wantHits)
			}
		})
	}
}
