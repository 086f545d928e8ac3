package maskinporten

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
)

// flakyMetadata serves the simulator's metadata, or 503 while down.
type flakyMetadata struct {
	sim  http.Handler
	down atomic.Bool
	hits atomic.Int64
}

func (f *flakyMetadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	if f.down.Load() {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	f.sim.ServeHTTP(w, r)
}

func TestDiscovery(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	front := &flakyMetadata{sim: w.Sim.Handler()}
	srv := httptest.NewServer(front)
	defer srv.Close()
	// The environment's issuer is the simulator's, but its metadata is
	// fetched through the flaky front.
	env := Environment{Name: "sim", Issuer: w.Issuer}
	d := NewDiscovery(&http.Client{Transport: rewriteHost{to: srv.Listener.Addr().String()}}, time.Hour)

	got, err := d.TokenEndpoint(t.Context(), env)
	if err != nil || got != w.Endpoint {
		t.Fatalf("TokenEndpoint = %q, %v; want the metadata's %q", got, err, w.Endpoint)
	}
	front.down.Store(true)
	if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != w.Endpoint {
		t.Fatalf("with the metadata down and a cached entry: %q, %v", got, err)
	}

	// A new process, metadata down: the configured endpoint stands in...
	cold := NewDiscovery(&http.Client{Transport: rewriteHost{to: srv.Listener.Addr().String()}}, time.Hour)
	env.TokenEndpoint = w.Endpoint
	if got, err := cold.TokenEndpoint(t.Context(), env); err != nil || got != w.Endpoint {
		t.Fatalf("cold, down, configured endpoint: %q, %v", got, err)
	}
	// ...and with none configured, the caller learns why.
	env.TokenEndpoint = ""
	if _, err := NewDiscovery(&http.Client{Transport: rewriteHost{to: srv.Listener.Addr().String()}}, time.Hour).TokenEndpoint(t.Context(), env); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("cold, down, nothing configured: %v", err)
	}
}

func TestStaleMetadataIsRefreshedInTheBackground(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	front := &flakyMetadata{sim: w.Sim.Handler()}
	srv := httptest.NewServer(front)
	defer srv.Close()
	env := Environment{Name: "sim", Issuer: w.Issuer}
	d := NewDiscovery(&http.Client{Transport: rewriteHost{to: srv.Listener.Addr().String()}}, time.Nanosecond)
	if _, err := d.TokenEndpoint(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	front.down.Store(true)
	for range 5 {
		if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != w.Endpoint {
			t.Fatalf("stale entry during an outage: %q, %v", got, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for front.hits.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the stale entry was never refreshed")
		}
		time.Sleep(time.Millisecond)
	}
}

// rewriteHost sends every request to one address, keeping the URL's path:
// the issuer's name stays in the metadata URL while the bytes go to the
// test's front server.
type rewriteHost struct{ to string }

func (r rewriteHost) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Host = r.to
	return http.DefaultTransport.RoundTrip(req)
}

// TestResponseSizeIsBounded: a server that answers with more than the
// bound gets an error, not an unbounded read, and no retry.
func TestResponseSizeIsBounded(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer","expires_in":120}`))
	}))
	defer srv.Close()
	opts := fastRetries()
	opts.MaxResponseBytes = 64 << 10
	b, err := NewGrantBuilder(w.Signer, GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(opts).Token(t.Context(), Exchange{Endpoint: srv.URL + "/token", Builder: b, Request: GrantRequest{Issuer: w.Issuer, ClientID: mptest.ClientID, Scopes: []string{mptest.ScopeOwn}}})
	if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "larger than 65536 bytes") {
		t.Fatalf("error = %v, want ErrBadResponse for the size", err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d attempts, want 1: an oversized answer is not a network error", n)
	}
}
