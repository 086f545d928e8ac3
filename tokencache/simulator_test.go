package tokencache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/maskinporten"
)

// realFetcher fetches from the simulator with grants signed in SoftHSM2.
func realFetcher(t testing.TB, w *mptest.World) Fetcher {
	t.Helper()
	b, err := maskinporten.NewGrantBuilder(w.Signer, maskinporten.GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := maskinporten.NewClient(maskinporten.ClientOptions{})
	// One attempt per call: the cache does the retrying.
	return func(ctx context.Context, key Key) (maskinporten.Token, error) {
		grant, err := b.Build(maskinporten.GrantRequest{Issuer: w.Issuer, ClientID: key.ClientID, Scopes: key.ScopeList(), Resource: key.Resource, ConsumerOrg: key.ConsumerOrg})
		if err != nil {
			return maskinporten.Token{}, err
		}
		tok, _, err := client.Post(ctx, w.Endpoint, grant)
		return tok, err
	}
}

// TestColdKeyOneSignatureOnePost: 200 callers of one cold key cost one
// HSM signature and one POST to Maskinporten, and all get the token.
func TestColdKeyOneSignatureOnePost(t *testing.T) {
	leakCheck(t)
	w := mptest.New(t, mptest.Options{})
	c := New(realFetcher(t, w), Options{})
	closeAtEnd(t, c)
	key := NewKey("sim", mptest.ClientID, []string{mptest.ScopeOwn}, "", OnBehalfOf{})
	const callers = 200
	start := make(chan struct{})
	tokens := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := c.Get(context.Background(), key, 0)
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = tok.AccessToken.Reveal()
		}()
	}
	close(start)
	wg.Wait()
	if n := w.Signer.Signs(); n != 1 {
		t.Errorf("%d HSM signatures for %d callers of one cold key, want 1", n, callers)
	}
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		t.Errorf("%d POSTs to Maskinporten, want 1", n)
	}
	for i := range tokens {
		if tokens[i] == "" || tokens[i] != tokens[0] {
			t.Fatalf("caller %d got a different token", i)
		}
	}
}

// TestNearExpiryReplacedAhead: with 2 s tokens, callers asking all along
// get a token every time, and the token changes before the old one dies.
func TestNearExpiryReplacedAhead(t *testing.T) {
	leakCheck(t)
	w := mptest.New(t, mptest.Options{TokenLifetime: 2 * time.Second})
	c := New(realFetcher(t, w), Options{RefreshMargin: time.Second})
	closeAtEnd(t, c)
	key := NewKey("sim", mptest.ClientID, []string{mptest.ScopeOwn}, "", OnBehalfOf{})
	seen := map[string]bool{}
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		tok, err := c.Get(context.Background(), key, 0)
		if err != nil {
			t.Fatalf("a caller saw an error: %v", err)
		}
		if tok.Remaining(time.Now()) <= 0 {
			t.Fatal("a caller got an expired token")
		}
		seen[tok.AccessToken.Reveal()] = true
	}
	if len(seen) < 2 {
		t.Fatalf("the token was never replaced over 3.5 s of 2 s tokens (%d seen)", len(seen))
	}
	if s := c.Stats(); s.Refreshes == 0 || s.RefreshFailures != 0 {
		t.Fatalf("stats %+v: want background refreshes and no failures", s)
	}
	if s := c.Stats(); s.Misses != 1 {
		t.Fatalf("%d misses: callers waited for a fetch after the first", s.Misses)
	}
}

// BenchmarkColdFetch is a full fetch: a grant signed in SoftHSM2 and a POST
// to the simulator over loopback. Compare with BenchmarkGetHit.
func BenchmarkColdFetch(b *testing.B) {
	w := mptest.New(b, mptest.Options{})
	fetch := realFetcher(b, w)
	key := NewKey("sim", mptest.ClientID, []string{mptest.ScopeOwn}, "", OnBehalfOf{})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := fetch(context.Background(), key); err != nil {
			b.Fatal(err)
		}
	}
}
