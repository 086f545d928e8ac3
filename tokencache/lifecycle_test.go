package tokencache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/portvakt/portvakt/maskinporten"
)

// TestCloseCancelsFetchesAndRefusesCalls: Close cancels a miss's fetch and
// a background refresh, answers their waiters at once, waits for them,
// and leaves a cache that refuses every call without fetching.
func TestCloseCancelsFetchesAndRefusesCalls(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	ctx := context.Background()
	value(t, c, testKey, 0)
	f.setGate(make(chan struct{})) // fetches hang until their ctx ends
	clk.Advance(91 * time.Second)  // the refresh of testKey hangs
	waiter := getAsync(ctx, c, keyN(1), 0)
	waitFor(t, func() bool { return f.calls.Load() == 3 && c.Stats().Misses == 2 })

	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := <-waiter; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter got %v, want ErrClosed", err)
	}
	if s := c.Stats(); s.Refreshes != 1 || s.RefreshFailures != 1 {
		t.Fatalf("stats %+v: want the refresh ended, cancelled", s)
	}
	if _, err := c.Get(ctx, testKey, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	if _, ok, err := c.GetCached(ctx, testKey, 0, func(maskinporten.Token) error { return nil }); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("GetCached after Close = %v, %v", ok, err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d fetches, want none after Close", n)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestCloseStopsTimers: no scheduled refresh runs after Close.
func TestCloseStopsTimers(t *testing.T) {
	c, f, clk := newTestCache(t, 120*time.Second)
	for i := range 3 {
		value(t, c, keyN(i), 0)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d fetches, want no refresh after Close", n)
	}
}

// TestCloseGivesUpWhenItsContextEnds: a Fetcher that ignores its context
// keeps Close waiting until Close's own context ends; the error says how
// many are still running.
func TestCloseGivesUpWhenItsContextEnds(t *testing.T) {
	leakCheck(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	c := New(func(context.Context, Key) (maskinporten.Token, error) {
		started <- struct{}{}
		<-release // deaf to ctx
		return maskinporten.Token{}, errors.New("too late")
	}, Options{Clock: clockwork.NewFakeClockAt(epoch)})
	waiter := getAsync(context.Background(), c, testKey, 0)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.Close(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "fetches still running (1)") {
		t.Fatalf("Close = %v, want ctx's error naming 1 fetch", err)
	}
	if err := <-waiter; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter got %v, want ErrClosed at once", err)
	}
	close(release)
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("Close once the fetch returned = %v", err)
	}
}
