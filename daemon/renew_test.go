package daemon_test

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
)

// TestTokenSourceRenewsWithoutWaiting: the project's own client renewing
// Maskinporten's 120 s tokens ten times in a row never waits for a fetch:
// the daemon has refreshed each token in the background before the
// client comes back for it. (The client used to ask for 60 s, which a
// 120 s token fell under before its refresh point: every renewal was a
// synchronous miss.) Time is a fake clock shared by the daemon's cache,
// its Maskinporten client and the TokenSource, so ten renewals take no
// real minutes.
func TestTokenSourceRenewsWithoutWaiting(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	clock := clockwork.NewFakeClockAt(time.Now())
	e.clock = clock
	e.serve(t)
	src := dial(t, client.Options{Socket: e.daemon.Addresses()["unix"], Now: clock.Now}).
		TokenSource(client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"})
	stats := e.daemon.Service().CacheStats

	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if lifetime := tok.Expiry.Sub(clock.Now()); lifetime < 119*time.Second || lifetime > 120*time.Second {
		t.Fatalf("the simulator issued a token for %s; this test is about 120 s tokens", lifetime)
	}
	for i := 1; i <= 10; i++ {
		// To the moment the TokenSource gives its token up
		// (client.EarlyExpiry before its expiry), in one step: the
		// daemon's refresh timer, due before then, fires on the way. The
		// clock then stands still while the refresh posts, so that its
		// fetch budget (on the same clock) cannot run out under a slow
		// machine.
		clock.Advance(tok.Expiry.Add(-client.EarlyExpiry).Sub(clock.Now()))
		waitFor(t, "the background refresh", func() bool { return stats().Refreshes >= uint64(i) })
		next, err := src.Token()
		if err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
		if next.AccessToken == tok.AccessToken || !next.Expiry.After(tok.Expiry) {
			t.Fatalf("renewal %d handed out the old token again", i)
		}
		tok = next
	}
	st := stats()
	if st.Misses != 1 || st.Refreshes != 10 {
		t.Fatalf("ten renewals: %d misses and %d refreshes, want 1 (the first call) and 10", st.Misses, st.Refreshes)
	}
}
