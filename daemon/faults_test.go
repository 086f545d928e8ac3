package daemon_test

// The fault suite: `portvakt serve` as a real process (startProcess)
// against the Maskinporten simulator over real HTTP (mptest.World, whose
// faults are switched with mpsim.Server.SetFaults and whose listener is
// taken down and brought back with World.Down and World.Up) and a real
// SoftHSM2 token. What it asserts of each fault:
//
//   - a token cached before the fault is served, the same access token,
//     to its expiry and never after it;
//   - a cold call (a key with no token) answers UNAVAILABLE with a
//     google.rpc.RetryInfo, within the request timeout plus one back-off,
//     never waiting to the caller's deadline, never DEADLINE_EXCEEDED or
//     INTERNAL;
//   - the token requests sent per key during the outage are bounded by
//     the environment's circuit breaker, and its health is NOT_SERVING
//     while the breaker is open;
//   - once the fault clears, cold calls succeed again and health is
//     SERVING, without a restart.
//
// Elsewhere, not repeated here: kill -9 under load is TestKillNineUnderLoad
// (process_test.go); SIGTERM under load is TestShutdownSIGTERMUnderLoad
// (shutdown_test.go), with the in-process shutdown during a slow
// Maskinporten call; the idle-connection flood is in conns_test.go; the
// audit flood is TestFloodIsBounded (bounded_test.go, in-process: a
// flooding caller's records are counted, not written one by one, and the
// log's growth is bounded).

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// The suite's tuning: short, so that each subtest takes seconds.
const (
	// faultRequestTimeout is maskinporten.request_timeout: one attempt.
	faultRequestTimeout = time.Second
	// faultBackoffMax is the longest back-off between two attempts
	// (maskinporten.RetryPolicy.Max, 5 s by default).
	faultBackoffMax = 5 * time.Second
	// coldCallBound is how long a cold call during an outage may take: one
	// attempt, one back-off, and slack for a race-enabled daemon on a
	// busy machine. The suite's only timing claim, and a generous one.
	coldCallBound = faultRequestTimeout + faultBackoffMax + 2*time.Second
	// callerDeadline is the deadline the suite's callers give: far beyond
	// coldCallBound, so that a daemon that waits for it is seen to.
	callerDeadline = 60 * time.Second

	// The circuit breaker's settings (cache.breaker.*: breakerConfig).
	breakerThreshold = 3
	breakerCoolDown  = time.Second

	// faultTokenLifetime is the simulator's expires_in: short, so that a
	// token cached before a fault expires during it.
	faultTokenLifetime = 4 * time.Second
	// outageLength is how long the load runs during a fault: longer than
	// faultTokenLifetime, so the cached token expires within it.
	outageLength = 5 * time.Second
	// coldKeys is how many keys the load asks for during an outage.
	coldKeys = 5
)

// breakerConfig is the circuit breaker's configuration, inside the cache
// block: per environment, a breaker opens after threshold consecutive
// failed attempts, sends nothing while open, and lets one probe through
// after each cool-down, which grows from cool_down to max_cool_down.
func breakerConfig() string {
	return fmt.Sprintf(", breaker: {threshold: %d, cool_down: %s, max_cool_down: 30s}", breakerThreshold, breakerCoolDown)
}

// withFaultTuning sets the short request timeout and the breaker.
func withFaultTuning(t *testing.T) func(string) string {
	return func(cfg string) string {
		cfg = mustReplace(t, cfg, "cache: {error_backoff: 1ms}\n", "cache: {error_backoff: 1ms"+breakerConfig()+"}\n")
		return cfg + fmt.Sprintf("maskinporten: {request_timeout: %s}\n", faultRequestTimeout)
	}
}

// faultRequest asks env for ScopeOwn with resource, a key of its own.
func faultRequest(envName, resource string) *portvaktv1.GetTokenRequest {
	return &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: envName, Resource: resource}
}

// answer is one GetToken's result.
type answer struct {
	resource string
	started  time.Time
	elapsed  time.Duration
	resp     *portvaktv1.GetTokenResponse
	err      error
}

// ask makes one GetToken with the suite's caller deadline.
func ask(api portvaktv1.TokenServiceClient, req *portvaktv1.GetTokenRequest) answer {
	ctx, cancel := context.WithTimeout(context.Background(), callerDeadline)
	defer cancel()
	a := answer{resource: req.GetResource(), started: time.Now()}
	a.resp, a.err = api.GetToken(ctx, req)
	a.elapsed = time.Since(a.started)
	return a
}

// retryDelay is the RetryInfo detail's delay, or 0 without one.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// coldProblem says what is wrong with a cold call's answer during an
// outage, or "" when it is what the spec asks: UNAVAILABLE with a
// RetryInfo whose delay is positive, within coldCallBound.
func coldProblem(a answer) string {
	st := status.Convert(a.err)
	var problems []string
	switch {
	case a.err == nil:
		problems = append(problems, "got a token during the outage")
	case st.Code() != codes.Unavailable:
		problems = append(problems, fmt.Sprintf("code %s (%q), want Unavailable", st.Code(), st.Message()))
	}
	if a.err != nil && retryDelay(a.err) <= 0 {
		problems = append(problems, fmt.Sprintf("no RetryInfo with a positive delay (details %v; message %q)", st.Details(), st.Message()))
	}
	if a.elapsed >= coldCallBound {
		problems = append(problems, fmt.Sprintf("took %s, want < %s", a.elapsed.Round(time.Millisecond), coldCallBound))
	}
	return strings.Join(problems, "; ")
}

// checkCold reports, once per kind of problem, what is wrong with the
// cold calls' answers, and logs what they were.
func checkCold(t *testing.T, what string, faultStart time.Time, answers []answer) {
	t.Helper()
	if len(answers) == 0 {
		t.Errorf("%s: no cold call was made", what)
		return
	}
	codesSeen := map[string]int{}
	var slowest time.Duration
	firstOf := map[string]answer{}
	var kinds []string
	for _, a := range answers {
		codesSeen[status.Code(a.err).String()]++
		slowest = max(slowest, a.elapsed)
		if p := coldProblem(a); p != "" {
			// One report per kind: the message without what varies.
			kind := p
			if i := strings.Index(kind, " ("); i > 0 {
				kind = kind[:i]
			}
			if _, seen := firstOf[kind]; !seen {
				firstOf[kind] = a
				kinds = append(kinds, kind)
			}
		}
	}
	t.Logf("%s: %d cold calls, codes %v, slowest %s", what, len(answers), codesSeen, slowest.Round(time.Millisecond))
	for _, kind := range kinds {
		a := firstOf[kind]
		t.Errorf("%s: a cold call (resource %s, %s after the fault began) is wrong: %s", what, a.resource, a.started.Sub(faultStart).Round(time.Millisecond), coldProblem(a))
	}
}

// faultCase is one Maskinporten fault: how to start it and end it.
type faultCase struct {
	name        string
	start, stop func(t *testing.T, w *mptest.World)
}

func simFault(f mpsim.Faults) (start, stop func(*testing.T, *mptest.World)) {
	return func(_ *testing.T, w *mptest.World) { w.Sim.SetFaults(f) },
		func(_ *testing.T, w *mptest.World) { w.Sim.SetFaults(mpsim.Faults{}) }
}

func faultCases() []faultCase {
	cases := []faultCase{{
		name:  "down",
		start: func(t *testing.T, w *mptest.World) { w.Down(t) },
		stop:  func(t *testing.T, w *mptest.World) { w.Up(t) },
	}}
	for _, c := range []struct {
		name string
		f    mpsim.Faults
	}{
		{"slow", mpsim.Faults{Latency: 2 * faultRequestTimeout}},
		{"5xx", mpsim.Faults{ServerErrorRate: 1}},
		{"429", mpsim.Faults{TooManyRequestsRate: 1}}, // with Retry-After: 1
		{"dropped", mpsim.Faults{DropRate: 1}},
	} {
		start, stop := simFault(c.f)
		cases = append(cases, faultCase{name: c.name, start: start, stop: stop})
	}
	return cases
}

// postBound is the most token requests the circuit breaker lets through
// for one key during an outage of length d. Per environment the breaker
// opens after breakerThreshold consecutive failed attempts, so a key (of
// which at most one fetch is in flight at a time) can have sent at most
// breakerThreshold before it opens; while open nothing is sent, and after
// each cool-down one probe goes out, whose failure opens it again for a
// cool-down at least breakerCoolDown long (it grows from there). At most
// d/breakerCoolDown cool-downs end within d, so at most that many probes
// are sent, by this key or another:
//
//	bound = breakerThreshold + floor(d / breakerCoolDown)
//
// d is measured, from the fault's start to the load's last answer: for
// the suite's 5 s of load about 3 + 5 = 8. The old behaviour, 4 attempts
// per call and a 1 ms error back-off, is some tens per key.
func postBound(d time.Duration) int {
	return breakerThreshold + int(d/breakerCoolDown)
}

// signaturesByResource counts the audit's signature records of
// environment envName made within [from, to], by resource: each is a
// grant signed and sent (or tried: when Maskinporten is unreachable, the
// simulator sees none of them).
func signaturesByResource(t *testing.T, e *env, envName string, from, to time.Time) map[string]int {
	t.Helper()
	n := map[string]int{}
	if err := audit.Query(auditFiles(t, e), audit.Filter{}, func(r audit.Record) error {
		if r.Kind == "signature" && r.Environment == envName && !r.Time.Before(from) && !r.Time.After(to) {
			n[r.Resource]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// diff is after - before, key by key.
func diff(after, before map[string]int) map[string]int {
	d := maps.Clone(after)
	for k, v := range before {
		if d[k] -= v; d[k] == 0 {
			delete(d, k)
		}
	}
	return d
}

// checkPOSTs reports the keys that sent more than bound requests.
func checkPOSTs(t *testing.T, what string, counts map[string]int, bound int) {
	t.Helper()
	total := 0
	for _, n := range counts {
		total += n
	}
	t.Logf("%s: %d in all, by key %v (bound per key %d)", what, total, counts, bound)
	for k, n := range counts {
		if n > bound {
			t.Errorf("%s: %d for key %s, want at most %d (breaker threshold %d + cool-downs in the outage)", what, n, k, bound, breakerThreshold)
		}
	}
}

// envHealth is the health of environment envName, or an error's code.
func envHealth(c healthpb.HealthClient, envName string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: daemon.HealthService(envName)})
	if err != nil {
		return status.Code(err).String()
	}
	return resp.GetStatus().String()
}

// eventually polls cond for up to d and says whether it came true: for
// what the suite reports rather than stops on, so a missing feature costs
// d and the remaining assertions still run.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outageLoad is what the clients saw during an outage.
type outageLoad struct {
	cold          []answer
	cachedServed  int      // calls for the cached key answered with its token
	cachedProblem []string // what was wrong with the others
	afterExpiry   []answer // calls for the cached key after it expired
	health        map[string]int
	end           time.Time
}

// runOutageLoad asks, for outageLength: coldKeys keys with no token, one
// call at a time each; the cached key, whose token must come back the same
// until it expires; and the environment's health.
func runOutageLoad(api portvaktv1.TokenServiceClient, health healthpb.HealthClient, envName string, cached *portvaktv1.GetTokenResponse, cachedResource string) *outageLoad {
	until := time.Now().Add(outageLength)
	load := &outageLoad{health: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k := range coldKeys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				a := ask(api, faultRequest(envName, fmt.Sprintf("https://api.example/cold/%d", k)))
				mu.Lock()
				load.cold = append(load.cold, a)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		expires := cached.GetExpiresAt().AsTime()
		for time.Now().Before(until) {
			a := ask(api, faultRequest(envName, cachedResource))
			mu.Lock()
			switch {
			case a.started.After(expires):
				load.afterExpiry = append(load.afterExpiry, a)
			case a.err == nil && a.resp.GetAccessToken() == cached.GetAccessToken():
				load.cachedServed++
			case a.err == nil:
				// A refresh cannot have succeeded during the fault.
				load.cachedProblem = append(load.cachedProblem, fmt.Sprintf("at %s: another token than the cached one", a.started.Format(time.StampMilli)))
			case a.started.Before(expires.Add(-250 * time.Millisecond)):
				// Before it expires (less the clocks' and the call's own
				// time), the cached token must be served.
				load.cachedProblem = append(load.cachedProblem, fmt.Sprintf("at %s, %s before it expired: %v", a.started.Format(time.StampMilli), expires.Sub(a.started).Round(time.Millisecond), a.err))
			}
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for time.Now().Before(until) {
			h := envHealth(health, envName)
			mu.Lock()
			load.health[h]++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	wg.Wait()
	load.end = time.Now()
	return load
}

// TestFaultMaskinporten runs each Maskinporten fault against a daemon
// process: the cached token served through it to its expiry, cold calls
// UNAVAILABLE with RetryInfo and fast, the token requests per key bounded
// by the breaker, health NOT_SERVING while it is open, and everything back
// once the fault clears.
func TestFaultMaskinporten(t *testing.T) {
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{TokenLifetime: faultTokenLifetime})
			e := prepare(t, w)
			e.edit(t, withFaultTuning(t))
			p := startProcess(t, e, 0)
			health := processHealth(t, p)

			// A token cached before the fault, fetched just before it so
			// that it is not yet due for a refresh when the fault starts.
			const cachedResource = "https://api.example/cached"
			first := ask(p.api, faultRequest("sim", cachedResource))
			if first.err != nil {
				t.Fatalf("a token before the fault: %v", first.err)
			}
			if h := envHealth(health, "sim"); h != healthpb.HealthCheckResponse_SERVING.String() {
				t.Fatalf("health of sim before the fault: %s", h)
			}
			simBefore := w.Sim.Stats().Resources
			faultStart := time.Now()
			tc.start(t, w)
			t.Cleanup(func() { tc.stop(t, w) }) // a failed subtest leaves no fault on
			load := runOutageLoad(p.api, health, "sim", first.resp, cachedResource)
			simDuring := diff(w.Sim.Stats().Resources, simBefore)
			tc.stop(t, w)
			faultEnd := time.Now()
			window := load.end.Sub(faultStart)
			t.Logf("fault %s for %s", tc.name, window.Round(time.Millisecond))

			// The cached token, to its expiry.
			if load.cachedServed == 0 {
				t.Errorf("the cached token was never served during the fault")
			}
			for i, p := range load.cachedProblem {
				if i == 3 {
					t.Errorf("… and %d more", len(load.cachedProblem)-3)
					break
				}
				t.Errorf("the cached key during the fault: %s", p)
			}
			for _, a := range load.afterExpiry {
				if a.err == nil && !a.resp.GetExpiresAt().AsTime().After(a.started) {
					t.Errorf("an expired token was served at %s (it expired at %s)", a.started.Format(time.StampMilli), a.resp.GetExpiresAt().AsTime().Format(time.StampMilli))
				}
			}
			t.Logf("the cached token was served %d times during the fault; %d calls after it expired", load.cachedServed, len(load.afterExpiry))

			// Cold calls: UNAVAILABLE with RetryInfo, fast. The cached key
			// after its expiry is a cold key too.
			checkCold(t, "cold keys", faultStart, load.cold)
			if len(load.afterExpiry) > 0 {
				checkCold(t, "the cached key after its expiry", faultStart, load.afterExpiry)
			}

			// Health while the breaker is open.
			t.Logf("health of sim sampled during the fault: %v", load.health)
			if load.health[healthpb.HealthCheckResponse_NOT_SERVING.String()] == 0 {
				t.Errorf("health of sim was never NOT_SERVING during the fault (samples %v): the breaker's state does not show", load.health)
			}

			// Back again: a key never asked for, then the keys that failed.
			var back answer
			waitFor(t, "a cold call to succeed after the fault", func() bool {
				back = ask(p.api, faultRequest("sim", "https://api.example/after"))
				return back.err == nil
			})
			t.Logf("a cold call succeeded %s after the fault ended", time.Since(faultEnd).Round(time.Millisecond))
			for k := range coldKeys {
				waitFor(t, fmt.Sprintf("cold key %d to get a token after the fault", k), func() bool {
					return ask(p.api, faultRequest("sim", fmt.Sprintf("https://api.example/cold/%d", k))).err == nil
				})
			}
			waitFor(t, "health of sim to be SERVING after the fault", func() bool {
				return envHealth(health, "sim") == healthpb.HealthCheckResponse_SERVING.String()
			})

			// The token requests during the outage, per key: at the
			// simulator (none reach it when it is down), and as signed
			// grants in the audit (every one, reached or not).
			bound := postBound(window)
			checkPOSTs(t, "token requests at the simulator during the fault", simDuring, bound)
			stopProcess(t, p)
			checkPOSTs(t, "grants signed during the fault (audit)", signaturesByResource(t, e, "sim", faultStart, load.end), bound)
			if _, err := audit.Verify(auditFiles(t, e)...); err != nil {
				t.Errorf("the audit does not verify after the fault: %v", err)
			}
		})
	}
}

// withDiscoveryEnvironment adds an environment, disc, at the same
// simulator that reads its token endpoint from the issuer's metadata and
// has no configured one to fall back on, and lets billing use it.
func withDiscoveryEnvironment(t *testing.T, e *env, w *mptest.World) {
	t.Helper()
	e.edit(t, func(cfg string) string {
		first := fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", w.Issuer, w.Endpoint, mptest.ClientID)
		disc := fmt.Sprintf("  - {name: disc, issuer: %q, discovery: true, client_id: %q, key_label: eseal}\n", w.Issuer, mptest.ClientID)
		return mustReplace(t, cfg, first, first+disc)
	})
	e.writePolicy(t, strings.ReplaceAll(defaultPolicy(), "environments: [sim]", "environments: [sim, disc]"))
}

// TestFaultStartedWhileMaskinportenDown: the daemon starts while
// Maskinporten is down, one environment with discovery (which fails); cold
// calls get UNAVAILABLE with RetryInfo, fast; each environment's health is
// NOT_SERVING; and when Maskinporten comes up, tokens flow in both without
// a restart.
func TestFaultStartedWhileMaskinportenDown(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	e.edit(t, withFaultTuning(t))
	withDiscoveryEnvironment(t, e, w)
	w.Down(t)
	downSince := time.Now()
	t.Cleanup(func() { w.Up(t) })
	p := startProcess(t, e, 0) // fails the test if the daemon does not come up
	health := processHealth(t, p)

	for _, envName := range []string{"sim", "disc"} {
		// Enough cold calls to open the breaker, each checked.
		var answers []answer
		for i := range breakerThreshold + 1 {
			answers = append(answers, ask(p.api, faultRequest(envName, fmt.Sprintf("https://api.example/%s/%d", envName, i))))
		}
		checkCold(t, envName+" started while Maskinporten is down", downSince, answers)
		if !eventually(3*time.Second, func() bool { return envHealth(health, envName) == healthpb.HealthCheckResponse_NOT_SERVING.String() }) {
			t.Errorf("health of %s while Maskinporten has been down since the start: %s, want NOT_SERVING", envName, envHealth(health, envName))
		}
	}

	w.Up(t)
	up := time.Now()
	for _, envName := range []string{"sim", "disc"} {
		i := 0
		waitFor(t, envName+" to issue a token once Maskinporten is up", func() bool {
			i++
			return ask(p.api, faultRequest(envName, fmt.Sprintf("https://api.example/%s/up/%d", envName, i))).err == nil
		})
		waitFor(t, "health of "+envName+" to be SERVING once Maskinporten is up", func() bool {
			return envHealth(health, envName) == healthpb.HealthCheckResponse_SERVING.String()
		})
	}
	t.Logf("tokens flow in both environments %s after Maskinporten came up", time.Since(up).Round(time.Millisecond))
	stopProcess(t, p)
	if _, err := audit.Verify(auditFiles(t, e)...); err != nil {
		t.Errorf("the audit does not verify: %v", err)
	}
}

// TestFaultHSMAwayAndBack: the SoftHSM2 token goes away under a daemon
// process (its directory moved out of sight, as TestHSMOutage does in
// process) and comes back: the cached token is served meanwhile, cold calls
// get UNAVAILABLE with RetryInfo, fast, the environment's health is
// NOT_SERVING; once back, signing resumes without a restart.
func TestFaultHSMAwayAndBack(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	e.edit(t, withFaultTuning(t), withProbe(t, w))
	p := startProcess(t, e, 0)
	health := processHealth(t, p)

	const cachedResource = "https://api.example/cached"
	cached := ask(p.api, faultRequest("sim", cachedResource))
	if cached.err != nil {
		t.Fatal(cached.err)
	}
	bringBack := w.Token.TakeAway(t)
	away := time.Now()

	var answers []answer
	for i := range 3 {
		answers = append(answers, ask(p.api, faultRequest("sim", fmt.Sprintf("https://api.example/away/%d", i))))
		a := ask(p.api, faultRequest("sim", cachedResource))
		if a.err != nil || a.resp.GetAccessToken() != cached.resp.GetAccessToken() {
			t.Errorf("the cached token while the HSM is away: %v (the same token: %t)", a.err, a.err == nil && a.resp.GetAccessToken() == cached.resp.GetAccessToken())
		}
	}
	checkCold(t, "the HSM away", away, answers)
	if !eventually(3*probeInterval, func() bool { return envHealth(health, "sim") == healthpb.HealthCheckResponse_NOT_SERVING.String() }) {
		t.Errorf("health of sim while the HSM is away: %s, want NOT_SERVING", envHealth(health, "sim"))
	}

	bringBack()
	i := 0
	waitFor(t, "signing to resume once the HSM is back", func() bool {
		i++
		return ask(p.api, faultRequest("sim", fmt.Sprintf("https://api.example/back/%d", i))).err == nil
	})
	waitFor(t, "health of sim to be SERVING once the HSM is back", func() bool {
		return envHealth(health, "sim") == healthpb.HealthCheckResponse_SERVING.String()
	})
	stopProcess(t, p)
	if _, err := audit.Verify(auditFiles(t, e)...); err != nil {
		t.Errorf("the audit does not verify: %v", err)
	}
}
