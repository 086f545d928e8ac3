package daemon_test

import (
	"sync"
	"testing"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestIdenticalColdCallersOneSignature: 200 callers asking at once, over
// mutual TLS, for the same token the daemon does not have cost one HSM
// signature and one POST to Maskinporten, and every one of them gets
// that token; the audit holds one signature record and an outcome for
// each caller.
func TestIdenticalColdCallersOneSignature(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	const callers = 200
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim", ConsumerOrg: mptest.ConsumerOrg}
	start := make(chan struct{})
	tokens := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := e.mtls.API().GetToken(t.Context(), req)
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = resp.GetAccessToken()
		}()
	}
	close(start)
	wg.Wait()
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		t.Errorf("%d POSTs to Maskinporten for %d identical cold callers, want 1", n, callers)
	}
	for i := range tokens {
		if tokens[i] == "" || tokens[i] != tokens[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	kinds := map[string]int{}
	if err := audit.Query([]string{auditPath(e)}, audit.Filter{}, func(r audit.Record) error {
		kinds[r.Kind]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if kinds["signature"] != 1 || kinds["outcome"]+kinds["decision"] < callers {
		t.Fatalf("audit records by kind %v, want one signature and a record of each of the %d calls", kinds, callers)
	}
}
