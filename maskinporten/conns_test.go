package maskinporten

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
)

// TestConcurrentPostsReuseConnections: waves of concurrent POSTs (many
// cold keys at once) reuse the connections of the wave before instead of
// opening new ones: over HTTP/1.1, net/http keeps only 2 idle connections
// to a host unless told otherwise.
func TestConcurrentPostsReuseConnections(t *testing.T) {
	w := newWorld(t)
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(w.Sim.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	// Each answer comes late, so that the POSTs of a wave overlap.
	w.Sim.SetFaults(mpsim.Faults{Latency: 50 * time.Millisecond})
	c := NewClient(ClientOptions{})
	t.Cleanup(c.CloseIdleConnections)
	b := w.builder(t, GrantOptions{})
	const concurrent, waves = 20, 3
	for range waves {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := b.Build(w.request(mptest.ScopeOwn))
				if err == nil {
					_, _, err = c.Post(t.Context(), srv.URL+"/token", g)
				}
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if n := opened.Load(); n > concurrent {
		t.Fatalf("%d connections opened for %d waves of %d concurrent POSTs, want at most %d", n, waves, concurrent, concurrent)
	}
}
