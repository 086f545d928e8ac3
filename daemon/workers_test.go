package daemon_test

import (
	"runtime/metrics"
	"sync"
	"testing"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestConcurrentCallsRunOnWorkers: calls that come at once run on the
// server's kept goroutines, whose stacks have already grown to what a
// call needs, rather than each on a new goroutine: a new one grows its
// stack on the way to the audit record, copying it, and that copy was a
// seventh of a cached GetToken's CPU under 16 concurrent callers. The
// test counts the goroutines this process (daemon and client) starts
// while 16 callers make cached calls.
func TestConcurrentCallsRunOnWorkers(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	if _, err := e.unix.API().GetToken(t.Context(), req); err != nil { // fill the cache
		t.Fatal(err)
	}
	const callers, each = 16, 64
	run := func() {
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range each {
					if _, err := e.unix.API().GetToken(t.Context(), req); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	run() // the workers' and the connection's first goroutines
	before := goroutinesCreated()
	run()
	created := goroutinesCreated() - before
	// 16 callers' goroutines, and a few of the runtime's and the
	// connection's own; a goroutine per call would be over a thousand.
	if limit := uint64(callers * each / 8); created > limit {
		t.Errorf("%d concurrent callers making %d calls started %d goroutines, want at most %d: calls are not running on the server's workers", callers, callers*each, created, limit)
	}
	t.Logf("%d goroutines started for %d calls", created, callers*each)
}

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
