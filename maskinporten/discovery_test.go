package maskinporten

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/internal/mptest"
)

// flakyMetadata serves the simulator's metadata, or 503 while down.
type flakyMetadata struct {
	sim  http.Handler
	down atomic.Bool
}

func (f *flakyMetadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	f.sim.ServeHTTP(w, r)
}

func TestDiscovery(t *testing.T) {
	noGoroutineLeft(t)
	w := mptest.New(t, mptest.Options{NoSigner: true})
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
	_, err = NewDiscovery(&http.Client{Transport: rewriteHost{to: srv.Listener.Addr().String()}}, time.Hour).TokenEndpoint(t.Context(), env)
	if !errors.Is(err, ErrDiscovery) || !IsTemporary(err) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("cold, down, nothing configured: %v; want a temporary ErrDiscovery saying HTTP 503", err)
	}
}

// TestStaleEntryIsRefreshedByTheNextCaller: an entry older than the TTL
// is refreshed by the caller that finds it, before it returns (no
// background refresh, no goroutine left behind), and is still used when
// the refresh fails.
func TestStaleEntryIsRefreshedByTheNextCaller(t *testing.T) {
	noGoroutineLeft(t)
	var endpoint atomic.Value
	endpoint.Store("/token")
	var hits atomic.Int64
	var down atomic.Bool
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String() + "/"
	srv.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(rw, "maintenance", http.StatusServiceUnavailable)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(rw, `{"issuer":%q,"token_endpoint":%q}`, issuer, strings.TrimSuffix(issuer, "/")+endpoint.Load().(string))
	})
	srv.Start()
	defer srv.Close()
	env := Environment{Name: "local", Issuer: issuer}
	const ttl = 250 * time.Millisecond
	d := NewDiscovery(srv.Client(), ttl)

	if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != srv.URL+"/token" {
		t.Fatalf("first: %q, %v", got, err)
	}
	// Fresh: served from the cache.
	if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != srv.URL+"/token" || hits.Load() != 1 {
		t.Fatalf("fresh: %q, %v after %d fetches, want the cached entry", got, err, hits.Load())
	}

	// Stale: this caller fetches the new metadata and gets it.
	endpoint.Store("/token2")
	time.Sleep(ttl + 50*time.Millisecond)
	if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != srv.URL+"/token2" || hits.Load() != 2 {
		t.Fatalf("stale: %q, %v after %d fetches, want the refreshed endpoint from the second fetch", got, err, hits.Load())
	}

	// Stale during an outage: each caller tries once, and gets the stale
	// entry rather than an error.
	down.Store(true)
	for i := range 3 {
		time.Sleep(ttl + 50*time.Millisecond)
		if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != srv.URL+"/token2" {
			t.Fatalf("stale during an outage: %q, %v", got, err)
		}
		if n := hits.Load(); n != int64(3+i) {
			t.Fatalf("%d fetches after %d stale calls: the refresh is not the caller's", n, i+1)
		}
	}

	// Back: the next stale caller refreshes it.
	down.Store(false)
	endpoint.Store("/token3")
	time.Sleep(ttl + 50*time.Millisecond)
	if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != srv.URL+"/token3" {
		t.Fatalf("after the outage: %q, %v", got, err)
	}
}

// TestDiscoveryFailures: with nothing cached and no endpoint configured,
// the caller gets ErrDiscovery, temporary when the metadata was
// unreachable or overloaded, permanent when its answer was wrong.
func TestDiscoveryFailures(t *testing.T) {
	noGoroutineLeft(t)
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		env := Environment{Name: "gone", Issuer: "http://" + l.Addr().String() + "/"}
		l.Close()
		transport := &http.Transport{}
		defer transport.CloseIdleConnections()
		d := NewDiscovery(&http.Client{Transport: transport}, time.Hour)
		_, err = d.TokenEndpoint(t.Context(), env)
		if !errors.Is(err, ErrDiscovery) || !IsTemporary(err) {
			t.Fatalf("error = %v; want a temporary ErrDiscovery", err)
		}
		if !strings.Contains(err.Error(), "Maskinporten unreachable: "+env.MetadataURL()+": ") {
			t.Fatalf("error reads %q, want it to name the metadata URL", err)
		}
		// A configured endpoint stands in.
		env.TokenEndpoint = "https://maskinporten.no/token"
		if got, err := d.TokenEndpoint(t.Context(), env); err != nil || got != env.TokenEndpoint {
			t.Fatalf("with a configured endpoint: %q, %v", got, err)
		}
	})
	for _, tt := range []struct {
		name      string
		status    int
		body      string
		temporary bool
	}{
		{"503", http.StatusServiceUnavailable, "maintenance", true},
		{"429", http.StatusTooManyRequests, "slow down", true},
		{"404", http.StatusNotFound, "not found", false},
		{"another issuer", http.StatusOK, `{"issuer":"https://evil.example/","token_endpoint":"https://evil.example/token"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
				rw.WriteHeader(tt.status)
				_, _ = rw.Write([]byte(tt.body))
			}))
			defer srv.Close()
			env := Environment{Name: "local", Issuer: srv.URL + "/"}
			_, err := NewDiscovery(srv.Client(), time.Hour).TokenEndpoint(t.Context(), env)
			if !errors.Is(err, ErrDiscovery) || IsTemporary(err) != tt.temporary {
				t.Fatalf("error = %v (temporary %v); want ErrDiscovery, temporary %v", err, IsTemporary(err), tt.temporary)
			}
			if !tt.temporary && !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error = %v, want ErrBadResponse", err)
			}
		})
	}
}

// noGoroutineLeft fails the test if a goroutine it started outlives it.
// It runs after the test's other cleanups (servers closed, signers
// closed), and ignores what was running before the test.
func noGoroutineLeft(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		goleak.VerifyNone(t, before)
	})
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
// bound gets an error, not an unbounded read, from one request.
func TestResponseSizeIsBounded(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer","expires_in":120}`))
	}))
	defer srv.Close()
	b, err := NewGrantBuilder(w.Signer, GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := b.Build(GrantRequest{Issuer: w.Issuer, ClientID: mptest.ClientID, Scopes: []string{mptest.ScopeOwn}})
	if err != nil {
		t.Fatal(err)
	}
	_, attempt, err := NewClient(ClientOptions{MaxResponseBytes: 64 << 10}).Post(t.Context(), srv.URL+"/token", g)
	if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "larger than 65536 bytes") {
		t.Fatalf("error = %v, want ErrBadResponse for the size", err)
	}
	if IsTemporary(err) || attempt.Err != err {
		t.Fatalf("IsTemporary = %v, Attempt.Err = %v: an oversized answer is not worth another attempt", IsTemporary(err), attempt.Err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}
