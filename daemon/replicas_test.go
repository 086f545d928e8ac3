package daemon_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/internal/p11kittest"
)

// instanceOf is the instance the log with active file path writes as.
func instanceOf(t *testing.T, path string) string {
	t.Helper()
	files, err := audit.LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := audit.InstanceOf(files)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago: a
// replica keeps its address across a restart, as in a deployment.
func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// copyFile copies src's content to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestThreeReplicas: three `portvakt serve` processes, each with its own
// configuration, listener, cache and audit chain (instance r0, r1, r2, in
// one shared audit directory), all signing with the same key on one
// SoftHSM2 token served by `p11-kit server`, sealed by per-instance
// checkpoints. A client spread over the three keeps asking for tokens
// that need a signature. Replica r1 is killed with SIGKILL and started
// again later; the HSM server is restarted once. No caller request fails
// past the client's retry; every token a caller received has its outcome
// and signature records in one of the chains; every chain verifies, all
// at once, with `portvakt audit verify`.
func TestThreeReplicas(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	w.Token.NewKey(t, "portvakt-audit")
	srv := p11kittest.Start(t, w.Token)
	shared, err := os.MkdirTemp("", "pvaudit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })

	var envs []*env
	var addrs []string
	for i := range 3 {
		e := prepare(t, w)
		if i > 0 { // one CA, one server certificate: the client trusts all three alike
			for _, f := range []string{"ca.pem", "server.pem", "server-key.pem"} {
				copyFile(t, filepath.Join(envs[0].dir, f), filepath.Join(e.dir, f))
			}
		}
		addr := freePort(t)
		addrs = append(addrs, addr)
		e.edit(t, withModule(t, w, srv.ClientModule(), ", probe_interval: 500ms"), func(cfg string) string {
			cfg = mustReplace(t, cfg, `address: "127.0.0.1:0", cert_file`, fmt.Sprintf(`address: %q, cert_file`, addr))
			return mustReplace(t, cfg, "audit: {file: audit/audit.log}", fmt.Sprintf(
				`audit: {file: %q, instance: r%d, seal: {every_records: 50, every: 1s}}`, filepath.Join(shared, "audit-{instance}.log"), i))
		})
		envs = append(envs, e)
	}
	procs := make([]*process, 3)
	for i, e := range envs {
		procs[i] = startProcess(t, e, 0)
	}

	c := dial(t, client.Options{Addresses: addrs, CertFile: envs[0].clientCert, KeyFile: envs[0].clientKey, CAFile: filepath.Join(envs[0].dir, "ca.pem")})
	type got struct{ requestID, resource, token string }
	var (
		mu       sync.Mutex
		tokens   []got
		failures []error
		calls    atomic.Int64
	)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for worker := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				resource := fmt.Sprintf("https://api.example/%d/%d", worker, i)
				callCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				var header metadata.MD
				tok, err := c.Token(callCtx, client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: resource}, grpc.Header(&header))
				cancel()
				calls.Add(1)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					tokens = append(tokens, got{header.Get("x-request-id")[0], resource, tok.AccessToken})
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // paced: a steady load, not a flood
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(tokens) }
	waitFor(t, "tokens from the replicas", func() bool { return count() >= 60 })

	// r1 is killed mid-load, and started again a little later.
	if err := procs[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = procs[1].cmd.Wait()
	before := count()
	waitFor(t, "tokens from the other two", func() bool { return count() >= before+60 })
	procs[1] = startProcess(t, envs[1], 0)

	// The network HSM behind all three goes away once, briefly.
	before = count()
	waitFor(t, "tokens from all three again", func() bool { return count() >= before+60 })
	srv.Kill()
	time.Sleep(300 * time.Millisecond)
	srv.Restart()
	before = count()
	waitFor(t, "tokens after the HSM's return", func() bool { return count() >= before+60 })
	stop()
	wg.Wait()
	for _, p := range procs {
		stopProcess(t, p)
	}

	t.Logf("calls made: %d; failed after the client's retry: %d; tokens received: %d", calls.Load(), len(failures), len(tokens))
	for i, err := range failures {
		if i < 5 {
			st, _ := status.FromError(err)
			t.Errorf("a call failed past the client's retry: %s: %s", st.Code(), st.Message())
		}
	}

	// Every token has its outcome and signature in one of the chains.
	instances, groups, err := audit.GroupByInstance(shared)
	if err != nil {
		t.Fatal(err)
	}
	if len(instances) != 3 || instances[0] != "r0" || instances[2] != "r2" {
		t.Fatalf("instances in the shared audit directory: %v", instances)
	}
	type key struct{ instance, requestID string }
	issued := map[string][]audit.Record{} // by request id, over all chains
	signed := map[key]map[string]bool{}
	perInstance := map[string]int{}
	for _, id := range instances {
		if _, err := audit.Verify(groups[id]...); err != nil {
			t.Fatalf("instance %s's chain: %v", id, err)
		}
		if err := audit.Query(groups[id], audit.Filter{}, func(r audit.Record) error {
			if r.Instance != id {
				return fmt.Errorf("record %d of %s's chain names instance %q", r.Seq, id, r.Instance)
			}
			switch {
			case r.Kind == audit.KindOutcome && r.Outcome == "issued":
				issued[r.RequestID] = append(issued[r.RequestID], r)
				perInstance[id]++
			case r.Kind == audit.KindSignature:
				k := key{id, r.RequestID}
				if signed[k] == nil {
					signed[k] = map[string]bool{}
				}
				signed[k][r.GrantJTI] = true
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	unrecorded := 0
	for _, tok := range tokens {
		ok := false
		for _, r := range issued[tok.requestID] {
			if r.Resource == tok.resource && signed[key{r.Instance, r.RequestID}][r.GrantJTI] {
				ok = true
			}
		}
		if !ok {
			unrecorded++
		}
	}
	t.Logf("tokens without an outcome and signature record: %d; issued per instance: %v", unrecorded, perInstance)
	if unrecorded > 0 {
		t.Errorf("%d tokens have no record in any chain", unrecorded)
	}
	for _, id := range instances {
		if perInstance[id] == 0 {
			t.Errorf("instance %s issued nothing: the client did not spread the calls", id)
		}
	}

	// And `portvakt audit verify` takes the three chains at once.
	cmd := exec.Command(portvaktBinary(t), "audit", "verify", shared)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("portvakt audit verify %s: %v\n%s", shared, err, out)
	}
	t.Logf("portvakt audit verify:\n%s", out)
}
