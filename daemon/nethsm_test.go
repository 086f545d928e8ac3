package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/internal/p11fault"
	"github.com/portvakt/portvakt/internal/p11kittest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// withModule points the single hsm block at another PKCS#11 module for
// the world's token, with the given extra settings.
func withModule(t *testing.T, w *mptest.World, module, extra string) func(string) string {
	return func(cfg string) string {
		return mustReplace(t, cfg, hsmLine(w), fmt.Sprintf("hsm: {module: %q, token: %q, pin: {env: PORTVAKT_TEST_PIN}%s}", module, w.Token.Label, extra))
	}
}

// TestNetworkHSMOutages: the token is served by `p11-kit server`, the
// stand-in for a network HSM, and the server is killed under load and
// started again, five times. Meanwhile cached tokens keep flowing and cold
// calls get UNAVAILABLE; afterwards signing resumes without a restart, and
// no goroutine or file descriptor is left over from the outages.
func TestNetworkHSMOutages(t *testing.T) {
	// Registered first, so it runs last: after the daemon, its clients and
	// the server have stopped.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	w := mptest.New(t, mptest.Options{NoSigner: true})
	srv := p11kittest.Start(t, w.Token)
	e := prepare(t, w)
	e.edit(t, withModule(t, w, srv.ClientModule(), fmt.Sprintf(", probe_interval: %s", probeInterval)))
	e.serve(t)

	cached := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/cached"}
	first, _, err := call(t, e, cached)
	if err != nil {
		t.Fatal(err)
	}
	load := startCalls(t, e, "sim")
	waitFor(t, "signing through the network HSM", func() bool { return load.successes.Load() >= 3 })

	outage := func() {
		t.Helper()
		srv.Kill()
		before := load.unavailable.Load()
		waitFor(t, "cold calls to get UNAVAILABLE", func() bool { return load.unavailable.Load() > before+3 })
		got, _, err := call(t, e, cached)
		if err != nil || got.GetAccessToken() != first.GetAccessToken() {
			t.Fatalf("a cached token while the network HSM is down: %v", err)
		}
		srv.Restart()
		back := time.Now()
		if took := load.resumedWithin(t, back); took > 2*probeInterval {
			t.Errorf("signed again %s after the HSM's return; want within two probe intervals (%s)", took.Round(time.Millisecond), 2*probeInterval)
		}
	}
	outage() // the first outage may allocate for good (a new connection's buffers)
	fdsBefore, err := p11kittest.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		outage()
	}
	load.halt()
	if other := load.otherErrors(); len(other) > 0 {
		t.Fatalf("errors other than UNAVAILABLE with retry advice: %v", other)
	}
	// Connections to the server close asynchronously; allow them a moment.
	var fdsAfter map[int]string
	waitFor(t, "file descriptors to settle", func() bool {
		fdsAfter, err = p11kittest.OpenFDs()
		return err == nil && len(fdsAfter) <= len(fdsBefore)
	})
	if len(fdsAfter) > len(fdsBefore) {
		t.Fatalf("file descriptors leaked over five outages: %s", p11kittest.DescribeFDs(fdsBefore, fdsAfter))
	}
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	if got, _ := value(families, "portvakt_hsm_reconnects_total", nil); got != 6 {
		t.Errorf("portvakt_hsm_reconnects_total = %v after six outages, want 6", got)
	}
	e.stop()
}

// TestSessionCountIsBackPressure: an HSM with fewer sessions than the
// daemon may open answers a burst of cold calls with CKR_SESSION_COUNT.
// Callers wait for a session up to the session wait and then get
// UNAVAILABLE with retry advice; the token is not reconnected and health
// stays SERVING.
func TestSessionCountIsBackPressure(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	shim := p11fault.New(t, w.Token.Module)
	e := prepare(t, w)
	e.edit(t, withModule(t, w, shim.Path(), ", max_sessions: 8, session_wait: 200ms"))
	e.serve(t)
	shim.SetSessionLimit(3) // the login session and two more
	shim.Delay("C_Sign", 40*time.Millisecond)
	inits := shim.Stats().Initializations

	type result struct {
		code codes.Code
		msg  string
	}
	results := make(chan result, 64)
	for g := range 16 {
		go func() {
			for i := range 4 {
				_, err := e.unix.API().GetToken(t.Context(), &portvaktv1.GetTokenRequest{
					Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d/%d", g, i),
				})
				st := status.Convert(err)
				results <- result{st.Code(), st.Message()}
			}
		}()
	}
	var ok, busy int
	for range 64 {
		r := <-results
		switch {
		case r.code == codes.OK:
			ok++
		case r.code == codes.Unavailable && containsAny(r.msg, "HSM is busy; retry with back-off"):
			busy++
		default:
			t.Errorf("a call got %v: %s", r.code, r.msg)
		}
	}
	st := shim.Stats()
	if st.SessionCountRefusals == 0 {
		t.Fatal("the HSM never ran out of sessions: the test tested nothing")
	}
	if ok == 0 || busy == 0 {
		t.Fatalf("%d served, %d told to back off; want both", ok, busy)
	}
	if st.Initializations != inits {
		t.Fatalf("the module was initialised %d more times: running out of sessions must not reconnect", st.Initializations-inits)
	}
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	if got, _ := value(families, "portvakt_hsm_reconnects_total", nil); got != 0 {
		t.Fatalf("portvakt_hsm_reconnects_total = %v after running out of sessions", got)
	}
	if up, _ := value(families, "portvakt_hsm_up", map[string]string{"environment": "sim"}); up != 1 {
		t.Fatalf("portvakt_hsm_up = %v while the HSM was only busy", up)
	}
}

// TestStartWaitsForHSM: a daemon started while the network HSM is away (a
// blip during a rollout, or SoftHSM2 showing its token uninitialised while
// a replica rewrites the token's files, which is how TestThreeReplicas
// met it) waits for it with back-off instead of failing its start, and
// serves once the HSM is back. Both of the start's HSM steps are tried:
// reading the audit head and opening the signing key's token.
func TestStartWaitsForHSM(t *testing.T) {
	for _, tc := range []struct {
		name, audit string
	}{
		{"signing key", "audit: {file: audit/audit.log}"},
		{"audit head", "audit: {file: audit/audit.log, seal: {every_records: 5}}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{NoSigner: true})
			w.Token.NewKey(t, "portvakt-audit")
			srv := p11kittest.Start(t, w.Token)
			e := prepare(t, w)
			e.edit(t, withModule(t, w, srv.ClientModule(), ""), func(cfg string) string {
				return mustReplace(t, cfg, "audit: {file: audit/audit.log}", tc.audit)
			})
			cfg := e.loadConfig(t)
			srv.Kill()

			type started struct {
				d   *daemon.Daemon
				err error
			}
			done := make(chan started, 1)
			opts := e.options()
			go func() {
				d, err := daemon.New(cfg, opts)
				done <- started{d, err}
			}()
			waitFor(t, "the start to find the HSM away", func() bool {
				return len(done) > 0 || strings.Contains(e.logs.String(), "the HSM is not reachable at start")
			})
			if len(done) > 0 {
				t.Fatalf("the start ended while the HSM was away: %v", (<-done).err)
			}
			srv.Restart()
			var s started
			select {
			case s = <-done:
			case <-time.After(30 * time.Second): // a hang guard
				t.Fatal("the start did not end after the HSM's return")
			}
			if s.err != nil {
				t.Fatalf("the start failed after the HSM's return: %v", s.err)
			}
			e.run(t, s.d)
			if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
				t.Fatalf("a token after the start: %v", err)
			}
		})
	}
}
