package daemon_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
)

// TestShutdownSIGTERMUnderLoad stops the daemon as systemd does (SIGTERM)
// while four clients keep it signing and Maskinporten answers slowly, so
// that calls are in flight: the process exits 0 within its shutdown grace,
// the audit log is closed cleanly (its last line says so, and `portvakt
// audit verify` passes), and every token a client received, those of the
// calls finished during the grace included, has its outcome and signature
// records. TestKillNineUnderLoad (process_test.go) is the same with
// SIGKILL.
func TestShutdownSIGTERMUnderLoad(t *testing.T) {
	const grace = 5 * time.Second
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	e.edit(t, func(cfg string) string {
		return mustReplace(t, cfg, "grpc: {shutdown_grace: 10s}", fmt.Sprintf("grpc: {shutdown_grace: %s}", grace))
	})
	p := startProcess(t, e, 0)
	w.Sim.SetFaults(mpsim.Faults{Latency: 200 * time.Millisecond})

	l := startLoad(t, p.api, 20)
	inFlight := w.Sim.Stats().TokenRequests - w.Sim.Stats().Issued
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(grace + 10*time.Second): // a hang guard
		t.Fatalf("the daemon has not exited %s after SIGTERM (grace %s)", time.Since(signalled).Round(time.Millisecond), grace)
	}
	took := time.Since(signalled)
	if waitErr != nil {
		t.Errorf("after SIGTERM the daemon exited with %v, want status 0", waitErr)
	}
	// The grace, and time for a race-enabled process to close its audit
	// log and HSM sessions.
	if took > grace+3*time.Second {
		t.Errorf("the daemon took %s to exit after SIGTERM, grace %s", took.Round(time.Millisecond), grace)
	}
	tokens := l.drain()
	t.Logf("SIGTERM with about %d token requests in flight; exited in %s; %d tokens received", inFlight, took.Round(time.Millisecond), len(tokens))

	res := assertTokensAudited(t, e, tokens, "SIGTERM")
	if out, code := verifyProcess(t, e); code != 0 {
		t.Errorf("portvakt audit verify exited %d after SIGTERM:\n%s", code, out)
	}
	closedCleanly := false
	for _, l := range processLog(t, e) {
		if l["msg"] == "audit log closed broken" {
			t.Errorf("the audit log closed broken: %v", l)
		}
		if l["msg"] == "audit log closed" {
			closedCleanly = true
			if seq, _ := l["last_seq"].(float64); uint64(seq) != res.LastSeq {
				t.Errorf("the daemon's last line names record %v, the log ends at %d", l["last_seq"], res.LastSeq)
			}
		}
	}
	if !closedCleanly {
		t.Error("the daemon's log does not say the audit log was closed")
	}
}

// TestShutdownDuringSlowMaskinporten shuts an in-process daemon down (its
// Serve's context cancelled) while a cold GetToken waits for a slow
// Maskinporten: Serve returns, the call gets an answer (a token, or
// UNAVAILABLE), and no goroutine of the daemon's is left: not once Serve
// has returned, while the simulator's latency is still on (a fetch or a
// refresh that outlives Serve shows here), nor after the simulator is
// closed too. Once with a grace that outlasts the call, once with one that
// cuts it short.
func TestShutdownDuringSlowMaskinporten(t *testing.T) {
	for _, tc := range []struct {
		name           string
		latency, grace time.Duration
	}{
		{"the grace outlasts the call", 2 * time.Second, 10 * time.Second},
		{"the grace cuts the call short", 10 * time.Second, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// First, so that it runs last: after the daemon, the clients
			// and the simulator are closed.
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, append(leakIgnores(), ignore)...) })

			w := mptest.New(t, mptest.Options{NoSigner: true})
			e := startDaemon(t, w, func(cfg string) string {
				return mustReplace(t, cfg, "grpc: {shutdown_grace: 10s}", fmt.Sprintf("grpc: {shutdown_grace: %s}", tc.grace))
			})
			w.Sim.SetFaults(mpsim.Faults{Latency: tc.latency})
			result := make(chan answer, 1)
			go func() { result <- ask(e.unix.API(), faultRequest("sim", "https://api.example/in-flight")) }()
			waitFor(t, "the call to reach Maskinporten", func() bool { return w.Sim.Stats().TokenRequests == 1 })

			e.cancel()
			select {
			case err := <-e.done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
				e.done <- nil // for the cleanup's stop
			case <-time.After(tc.grace + 20*time.Second): // a hang guard
				t.Fatal("Serve has not returned")
			}
			var a answer
			select {
			case a = <-result:
			case <-time.After(20 * time.Second): // a hang guard
				t.Fatal("the call in flight at shutdown has no answer")
			}
			switch st := status.Convert(a.err); {
			case a.err == nil:
				t.Logf("the call in flight got a token after %s", a.elapsed.Round(time.Millisecond))
			case st.Code() == codes.Unavailable:
				t.Logf("the call in flight got UNAVAILABLE after %s: %s", a.elapsed.Round(time.Millisecond), st.Message())
			default:
				t.Errorf("the call in flight at shutdown: %v, want a token or UNAVAILABLE", a.err)
			}

			// Serve has returned and Maskinporten is still slow: nothing of
			// the daemon's may still run. The test's own clients are closed
			// first (their cleanups close them again, harmlessly).
			_ = e.unix.Close()
			_ = e.mtls.Close()
			if err := goleak.Find(append(leakIgnores(), append(simIgnores(), ignore)...)...); err != nil {
				t.Errorf("goroutines outlive Serve while Maskinporten is slow: %v", err)
			}
		})
	}
}

// simIgnores are the in-process simulator's goroutines, which run while it
// serves and are not the daemon's.
func simIgnores() []goleak.Option {
	return []goleak.Option{
		// Its accept loop.
		goleak.IgnoreAnyFunction("github.com/portvakt/portvakt/mpsim.(*Listener).accept"),
		// A request it holds for the simulated latency.
		goleak.IgnoreAnyFunction("github.com/portvakt/portvakt/mpsim.(*Server).serveToken"),
		// The server side's watch on that request's connection: net/http
		// runs it only while a server handler runs, and the daemon's own
		// HTTP server (metrics) has none once Serve has returned.
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	}
}
