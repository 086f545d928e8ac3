package daemon_test

import (
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestFullAuditFailsConcurrentCallsClosed: 16 callers of a cached token at
// once, whose records go to the audit log in shared writes, while the log
// fills up (ulimit -f, as on a full disk): every token handed out has its
// record in the log, every caller gets the audit's error once a write
// fails (the whole group of that write with it), and the log verifies.
func TestFullAuditFailsConcurrentCallsClosed(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	p := startProcess(t, e, 24) // room for a few dozen records
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	if _, err := p.api.GetToken(t.Context(), req); err != nil { // the token, cached for the rest
		t.Fatal(err)
	}

	const callers = 16
	var mu sync.Mutex
	var tokens []received
	failures := make([]error, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for range 1000 {
				var header metadata.MD
				resp, err := p.api.GetToken(t.Context(), req, grpc.Header(&header))
				if err != nil {
					failures[c] = err
					return
				}
				mu.Lock()
				tokens = append(tokens, received{requestID: header.Get("x-request-id")[0], token: resp.GetAccessToken()})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for c, err := range failures {
		if err == nil {
			t.Fatalf("caller %d never saw the audit log fill up", c)
		}
		assertAuditFailure(t, err)
	}
	t.Logf("%d cached tokens before the audit log filled up", len(tokens))
	stopProcess(t, p)

	files := auditFiles(t, e)
	res, err := audit.Verify(files...)
	if err != nil {
		t.Fatalf("the audit log does not verify after the failure: %v", err)
	}
	if len(res.Gaps) == 0 || res.Gaps[0].Cause != audit.CauseWrite {
		t.Fatalf("gaps %+v, want the write that failed", res.Gaps)
	}
	cached := map[string]int{}
	if err := audit.Query(files, audit.Filter{}, func(r audit.Record) error {
		if r.Kind == audit.KindDecision && r.Outcome == "cached" {
			cached[r.RequestID]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if cached[tok.requestID] != 1 {
			t.Fatalf("request %s got a cached token, and the log holds %d records of it", tok.requestID, cached[tok.requestID])
		}
	}
}
