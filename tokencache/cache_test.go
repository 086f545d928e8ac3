package tokencache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/secret"
)

// These tests exercise the cache's own logic with a scripted fetcher and
// a fake clock: time passes only when a test moves it. The tests that run
// it with grants signed in SoftHSM2 against the Maskinporten simulator
// are in simulator_test.go.

var epoch = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// unavailable is a temporary failure: retried, and counted by the breaker.
var unavailable = &maskinporten.Error{Status: 503, Code: "server_error"}

// fetcher hands out numbered tokens (token-N for its N-th call) of a fixed
// lifetime, counting calls, and fails as scripted.
type fetcher struct {
	clock    clockwork.Clock
	lifetime time.Duration
	calls    atomic.Int64

	mu        sync.Mutex
	gate      chan struct{} // when set, each call waits for a value or its ctx
	fail      func(n int64, key Key) error
	issuedAgo time.Duration // tokens arrive this much into their lifetime
	deadlines []time.Time
	values    []any
}

// failWith scripts the answer of each call made from now on.
func (f *fetcher) failWith(fn func(n int64, key Key) error) { f.mu.Lock(); f.fail = fn; f.mu.Unlock() }

// failAlways makes every call from now on fail with err; nil succeeds.
func (f *fetcher) failAlways(err error) {
	f.failWith(func(int64, Key) error { return err })
}

func (f *fetcher) setGate(g chan struct{}) { f.mu.Lock(); f.gate = g; f.mu.Unlock() }

type callerKey struct{}

func (f *fetcher) fetch(ctx context.Context, key Key) (maskinporten.Token, error) {
	n := f.calls.Add(1)
	deadline, _ := ctx.Deadline()
	f.mu.Lock()
	f.deadlines = append(f.deadlines, deadline)
	f.values = append(f.values, ctx.Value(callerKey{}))
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return maskinporten.Token{}, ctx.Err()
		}
	}
	f.mu.Lock()
	fail, ago := f.fail, f.issuedAgo
	f.mu.Unlock()
	if fail != nil {
		if err := fail(n, key); err != nil {
			return maskinporten.Token{}, err
		}
	}
	issued := f.clock.Now().Add(-ago)
	v, _ := secret.New(fmt.Sprintf("token-%d", n))
	return maskinporten.Token{AccessToken: v, TokenType: "Bearer", ExpiresIn: f.lifetime, IssuedAt: issued, ExpiresAt: issued.Add(f.lifetime)}, nil
}

// newTestCache makes a cache on a fake clock with three entries, a 30 s
// margin and a 2 s error back-off; tweak changes the options. The cache
// is closed when the test ends, and no goroutine may be left then.
func newTestCache(tb testing.TB, lifetime time.Duration, tweak ...func(*Options)) (*Cache, *fetcher, *clockwork.FakeClock) {
	leakCheck(tb)
	clk := clockwork.NewFakeClockAt(epoch)
	f := &fetcher{clock: clk, lifetime: lifetime}
	opts := Options{
		RefreshMargin: 30 * time.Second,
		ErrorBackoff:  backoff.Policy{Initial: 2 * time.Second, Max: 2 * time.Second},
		MaxEntries:    3,
		Clock:         clk,
	}
	for _, fn := range tweak {
		fn(&opts)
	}
	c := New(f.fetch, opts)
	closeAtEnd(tb, c)
	return c, f, clk
}

// leakCheck checks, when the test ends, that no goroutine is left:
// softhsmtest.Main owns TestMain (and exits), so the check is made per
// test. Call it first: cleanups run last-registered first, so it then
// runs after the cache and whatever else the test started are closed.
// Goroutines running before the test (a benchmark's harness) are not its.
func leakCheck(tb testing.TB) {
	before := goleak.IgnoreCurrent()
	tb.Cleanup(func() { goleak.VerifyNone(tb, before) })
}

// closeAtEnd closes c when the test ends.
func closeAtEnd(tb testing.TB, c *Cache) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a hang guard
		defer cancel()
		if err := c.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
}

var testKey = NewKey("test", "client", []string{"svv:kjoretoy/ecoc"}, "", OnBehalfOf{})

func keyN(i int) Key {
	return NewKey("test", fmt.Sprint("client-", i), []string{"a:b"}, "", OnBehalfOf{})
}

func value(t *testing.T, c *Cache, key Key, minValidity time.Duration) string {
	t.Helper()
	tok, err := c.Get(context.Background(), key, minValidity)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken.Reveal()
}

// waitFor waits for the cache's goroutines to reach cond. It measures no
// time: the deadline only keeps a broken test from hanging.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// drive moves clk on by step until done is closed or stop holds: for
// fetches that wait on the fake clock between attempts. Tests that drive
// give fetches budgets long enough that the steps cost nothing asserted.
func drive(clk *clockwork.FakeClock, step time.Duration, done <-chan struct{}, stop func() bool) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if stop != nil && stop() {
			return
		}
		clk.Advance(step)
		runtime.Gosched()
	}
}

// getAsync runs Get in a goroutine; the channel has its error.
func getAsync(ctx context.Context, c *Cache, key Key, minValidity time.Duration) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, key, minValidity)
		errc <- err
	}()
	return errc
}

func TestKeyIgnoresScopeOrder(t *testing.T) {
	a := NewKey("prod", "c", []string{"b:x", "a:y", "b:x"}, "r", OnBehalfOf{ConsumerOrg: "974760673"})
	b := NewKey("prod", "c", []string{"a:y", "b:x"}, "r", OnBehalfOf{ConsumerOrg: "974760673"})
	if a != b || a.Scopes != "a:y b:x" {
		t.Fatalf("keys differ: %+v %+v", a, b)
	}
	if NewKey("prod", "c", []string{"a:y"}, "r", OnBehalfOf{}) == NewKey("prod", "c", []string{"a:y"}, "r", OnBehalfOf{ConsumerOrg: "974760673"}) {
		t.Fatal("a delegated and an own token share a key")
	}
}

// TestSystemUserSplitsTheCache: a token for one system user is never
// handed out for the organisation itself, another customer or another
// external reference, and each gets its own fetch.
func TestSystemUserSplitsTheCache(t *testing.T) {
	scopes := []string{"svv:kjoretoy/ecoc"}
	keys := map[string]Key{
		"own":                       NewKey("test", "client", scopes, "", OnBehalfOf{}),
		"delegated to the customer": NewKey("test", "client", scopes, "", OnBehalfOf{ConsumerOrg: "313427137"}),
		"system user":               NewKey("test", "client", scopes, "", OnBehalfOf{SystemUserOrg: "313427137"}),
		"system user, a reference":  NewKey("test", "client", scopes, "", OnBehalfOf{SystemUserOrg: "313427137", SystemUserRef: "ref-1"}),
		"system user, another ref":  NewKey("test", "client", scopes, "", OnBehalfOf{SystemUserOrg: "313427137", SystemUserRef: "ref-2"}),
		"another customer":          NewKey("test", "client", scopes, "", OnBehalfOf{SystemUserOrg: "923456783"}),
	}
	flights := map[string]string{}
	for name, k := range keys {
		for other, ok := range keys {
			if other != name && k == ok {
				t.Fatalf("%s and %s share a key: %+v", name, other, k)
			}
		}
		if prev, dup := flights[k.flightKey()]; dup {
			t.Fatalf("%s and %s share a flight key", name, prev)
		}
		flights[k.flightKey()] = name
	}
	if k := keys["system user, a reference"]; k.SystemUserOrg != "313427137" || k.SystemUserRef != "ref-1" || k.ConsumerOrg != "" {
		t.Fatalf("key = %+v", k)
	}

	c, f, _ := newTestCache(t, 120*time.Second, func(o *Options) { o.MaxEntries = len(keys) })
	seen := map[string]string{} // token → the key's name
	for name, k := range keys {
		tok := value(t, c, k, 0)
		if prev, dup := seen[tok]; dup {
			t.Fatalf("%s got the token of %s", name, prev)
		}
		seen[tok] = name
	}
	if n := f.calls.Load(); n != int64(len(keys)) {
		t.Fatalf("%d fetches for %d keys", n, len(keys))
	}
	for name, k := range keys {
		if tok := value(t, c, k, 0); seen[tok] != name {
			t.Fatalf("%s: second Get gave %s's token", name, seen[tok])
		}
	}
	if n := f.calls.Load(); n != int64(len(keys)) {
		t.Fatalf("%d fetches after every key was cached, want %d", n, len(keys))
	}
}

func TestHitAfterMiss(t *testing.T) {
	c, f, _ := newTestCache(t, 120*time.Second)
	first := value(t, c, testKey, 0)
	if second := value(t, c, testKey, 0); second != first || f.calls.Load() != 1 {
		t.Fatalf("second Get = %s after %d fetches, want the cached %s after 1", second, f.calls.Load(), first)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 || s.Attempts != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	c, f, _ := newTestCache(t, 120*time.Second)
	gate := make(chan struct{})
	f.setGate(gate)
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
	// Every caller has joined the flight when it counts as a miss.
	waitFor(t, func() bool { return c.Stats().Misses == callers })
	close(gate)
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

func TestFailedRefreshKeepsTheValidToken(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	value(t, c, testKey, 0)
	f.failAlways(errors.New("hsm down"))
	clk.Advance(100 * time.Second) // past the refresh point: the timer's refresh fails
	waitFor(t, func() bool { return c.Stats().RefreshFailures == 1 })
	if v := value(t, c, testKey, 0); v != "token-1" {
		t.Fatalf("after a failed refresh Get = %s, want the still valid token-1", v)
	}
}

func TestErrorsAreCachedOnlyForTheBackoff(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	boom := errors.New("hsm down")
	f.failAlways(boom)
	var advice time.Duration
	for i := range 5 {
		_, err := c.Get(context.Background(), testKey, 0)
		if !errors.Is(err, boom) {
			t.Fatalf("Get = %v, want the fetch error", err)
		}
		after, ok := RetryAfter(err)
		if !ok || after <= 0 || after > 2*time.Second+time.Millisecond || (i > 0 && after != advice) {
			t.Fatalf("call %d: advice %v (%v), want the back-off's end, %v, the same for every call on a still clock", i, after, ok, advice)
		}
		advice = after
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches within the back-off, want 1", n)
	}
	// The advice is exact: just before it ends no fetch, at its end one.
	clk.Advance(advice - time.Nanosecond)
	if _, err := c.Get(context.Background(), testKey, 0); !errors.Is(err, boom) || f.calls.Load() != 1 {
		t.Fatalf("a nanosecond before the advice: %v after %d fetches", err, f.calls.Load())
	}
	f.failAlways(nil)
	clk.Advance(time.Nanosecond)
	if v := value(t, c, testKey, 0); v != "token-2" || f.calls.Load() != 2 {
		t.Fatalf("after the back-off Get = %s with %d fetches", v, f.calls.Load())
	}
}

func TestMinValidity(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	value(t, c, testKey, 0)
	clk.Advance(70 * time.Second)
	// 50 s left: enough for 30, not for 55.
	if v := value(t, c, testKey, 30*time.Second); v != "token-1" {
		t.Fatalf("min validity 30 s: got %s", v)
	}
	if v := value(t, c, testKey, 55*time.Second); v != "token-2" {
		t.Fatalf("min validity 55 s: got %s, want a fresh token", v)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestWaiterCancellationDoesNotCancelTheFetch(t *testing.T) {
	c, f, _ := newTestCache(t, 120*time.Second)
	gate := make(chan struct{})
	f.setGate(gate)
	ctx, cancel := context.WithCancel(context.Background())
	errc := getAsync(ctx, c, testKey, 0)
	waitFor(t, func() bool { return f.calls.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || err.Error() != "waiting for a token: context canceled" {
		t.Fatalf("cancelled waiter got %v", err)
	}
	close(gate)
	waitFor(t, func() bool {
		tok, err := c.Get(context.Background(), testKey, 0)
		return err == nil && tok.AccessToken.Reveal() == "token-1"
	})
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want the first one completed and kept", n)
	}
}

func TestBoundedSize(t *testing.T) {
	c, _, _ := newTestCache(t, 120*time.Second)
	for i := range 5 {
		value(t, c, keyN(i), 0)
	}
	if c.Len() != 3 || c.Stats().Evictions != 2 {
		t.Fatalf("len %d, evictions %d; want 3 and 2", c.Len(), c.Stats().Evictions)
	}
}

// TestEvictionStopsTheRefreshTimer: an evicted key's scheduled refresh
// never runs; the kept keys' do.
func TestEvictionStopsTheRefreshTimer(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	for i := range 4 { // the fourth evicts the first
		value(t, c, keyN(i), 0)
	}
	clk.Advance(95 * time.Second) // past every refresh point (90 s)
	waitFor(t, func() bool { return c.Stats().Refreshes == 3 })
	clk.Advance(time.Hour)
	if n, s := f.calls.Load(), c.Stats(); n != 4+3 || s.Refreshes != 3 || s.Evictions != 1 {
		t.Fatalf("%d fetches, stats %+v; want 4 misses and 3 refreshes, the evicted key's timer stopped", n, s)
	}
}

// TestGetCached: GetCached hands out only a token the cache already holds,
// after accept took it; it never fetches, and a refused token is neither a
// hit nor the cause of a refresh.
func TestGetCached(t *testing.T) {
	boom := errors.New("not on record")
	tests := []struct {
		name         string
		warm         bool          // a Get first (min validity 0: refresh point at 90 s)
		blockRefresh bool          // the refresh after the warm Get never completes
		advance      time.Duration // then the clock moves
		minValidity  time.Duration
		refuse       error // accept's answer
		wantOK       bool
		wantAccept   bool
		wantErr      error
		wantFetches  int64 // caused by GetCached, after any refresh has run
		wantHits     uint64
	}{
		{name: "empty cache"},
		{name: "cached token", warm: true, wantOK: true, wantAccept: true, wantHits: 1},
		{name: "refused by accept", warm: true, refuse: boom, wantAccept: true, wantErr: boom},
		{name: "too little validity left", warm: true, advance: 70 * time.Second, minValidity: 55 * time.Second},
		{name: "more than a token can have", warm: true, minValidity: 61 * time.Second},
		{name: "expired", warm: true, blockRefresh: true, advance: 121 * time.Second},
		{name: "near expiry: refreshed after it was accepted", warm: true, advance: 85 * time.Second, minValidity: 30 * time.Second, wantOK: true, wantAccept: true, wantFetches: 1, wantHits: 1},
		{name: "near expiry but refused: no refresh", warm: true, advance: 85 * time.Second, minValidity: 30 * time.Second, refuse: boom, wantAccept: true, wantErr: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f, clk := newTestCache(t, 120*time.Second)
			if tt.warm {
				value(t, c, testKey, 0)
			}
			if tt.blockRefresh {
				f.setGate(make(chan struct{})) // released by Close
			}
			clk.Advance(tt.advance)
			if tt.blockRefresh {
				waitFor(t, func() bool { return f.calls.Load() == 2 })
			}
			before, hitsBefore := f.calls.Load(), c.Stats().Hits
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
			if tt.wantFetches > 0 {
				waitFor(t, func() bool { return c.Stats().Refreshes == 1 })
			}
			if n := f.calls.Load() - before; n != tt.wantFetches {
				t.Fatalf("%d fetches, want %d", n, tt.wantFetches)
			}
			if hits := c.Stats().Hits - hitsBefore; hits != tt.wantHits {
				t.Fatalf("%d hits, want %d", hits, tt.wantHits)
			}
		})
	}
}
