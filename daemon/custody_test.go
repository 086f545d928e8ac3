package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// probeInterval is the HSM probe interval of these tests. The bounds they
// check are in probe intervals, as the daemon promises them; one interval
// is far longer than a reconnection takes, even under the race detector.
const probeInterval = time.Second

// hsmLine is the hsm block prepare writes for the world's token.
func hsmLine(w *mptest.World) string {
	return fmt.Sprintf("hsm: {module: %q, token: %q, pin: {env: PORTVAKT_TEST_PIN}}", w.Token.Module, w.Token.Label)
}

// withProbe sets the probe interval of the single hsm block.
func withProbe(t *testing.T, w *mptest.World) func(string) string {
	return func(cfg string) string {
		return mustReplace(t, cfg, hsmLine(w), fmt.Sprintf("hsm: {module: %q, token: %q, pin: {env: PORTVAKT_TEST_PIN}, probe_interval: %s}",
			w.Token.Module, w.Token.Label, probeInterval))
	}
}

// mustReplace replaces old in cfg, which must hold it: an edit that no
// longer matches would test the wrong configuration.
func mustReplace(t *testing.T, cfg, old, new string) string {
	t.Helper()
	if !strings.Contains(cfg, old) {
		t.Fatalf("the configuration no longer holds %q:\n%s", old, cfg)
	}
	return strings.Replace(cfg, old, new, 1)
}

// withEnvironment adds a second environment, sim2, at the same simulator,
// with its key under keyLabel on the HSM named hsm ("" for the only one).
func withEnvironment(t *testing.T, w *mptest.World, hsm, keyLabel string) func(string) string {
	return func(cfg string) string {
		first := fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", w.Issuer, w.Endpoint, mptest.ClientID)
		hsmKey := ""
		if hsm != "" {
			hsmKey = "hsm: " + hsm + ", "
		}
		second := fmt.Sprintf("  - {name: sim2, %sissuer: %q, token_endpoint: %q, client_id: %q, key_label: %s}\n", hsmKey, w.Issuer, w.Endpoint, mptest.ClientID, keyLabel)
		return mustReplace(t, cfg, first, first+second)
	}
}

// allowBoth lets the billing client use both environments.
func allowBoth(t *testing.T, e *env) {
	e.writePolicy(t, strings.ReplaceAll(defaultPolicy(), "environments: [sim]", "environments: [sim, sim2]"))
}

// callLoad asks one environment for tokens that are never cached (each
// call names a resource of its own), so every call needs a signature.
type callLoad struct {
	env                    string
	successes, unavailable atomic.Int64
	lastSuccess            atomic.Int64 // Unix nanoseconds
	mu                     sync.Mutex
	other                  []error
	stop                   chan struct{}
	wg                     sync.WaitGroup
}

func startCalls(t *testing.T, e *env, envName string) *callLoad {
	l := &callLoad{env: envName, stop: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := e.unix.API().GetToken(ctx, &portvaktv1.GetTokenRequest{
				Scopes: []string{mptest.ScopeOwn}, Environment: envName, Resource: fmt.Sprintf("https://api.example/%s/%d", envName, i),
			})
			cancel()
			switch st := status.Convert(err); {
			case err == nil:
				l.successes.Add(1)
				l.lastSuccess.Store(time.Now().UnixNano())
			case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "retry with back-off"):
				l.unavailable.Add(1)
				time.Sleep(2 * time.Millisecond)
			default:
				l.mu.Lock()
				l.other = append(l.other, err)
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(l.halt)
	return l
}

func (l *callLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *callLoad) otherErrors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.other...)
}

// resumedWithin waits for a success after since and returns how long after
// since it came (at most one poll late: an over-estimate).
func (l *callLoad) resumedWithin(t *testing.T, since time.Time) time.Duration {
	t.Helper()
	waitFor(t, l.env+" to sign again", func() bool { return l.lastSuccess.Load() > since.UnixNano() })
	return time.Since(since)
}

// healthOf asks the daemon's health service about one service name.
func healthOf(t *testing.T, c healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health of %q: %v", service, err)
	}
	return resp.GetStatus()
}

// TestTwoKeysOnOneTokenRecover: two environments with two keys on one
// token. The token goes away and comes back; every key on it must come
// back with it, without a restart, and with no signer of the test's own
// holding the module. The busy environment signs again within two probe
// intervals of the token's return, the idle one on its next call.
func TestTwoKeysOnOneTokenRecover(t *testing.T) {
	for _, tt := range []struct {
		name     string
		bothBusy bool
	}{
		{"one environment busy, one idle", false},
		{"both environments busy", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{NoSigner: true})
			w.Token.NewCertifiedKey(t, "eseal-b", w.CA)
			e := prepare(t, w)
			e.edit(t, withProbe(t, w), withEnvironment(t, w, "", "eseal-b"))
			allowBoth(t, e)
			e.serve(t)
			health := healthpb.NewHealthClient(connOf(t, e))

			busy := []*callLoad{startCalls(t, e, "sim")}
			if tt.bothBusy {
				busy = append(busy, startCalls(t, e, "sim2"))
			}
			for _, l := range busy {
				waitFor(t, l.env+" to sign", func() bool { return l.successes.Load() >= 3 })
			}

			bringBack := w.Token.TakeAway(t)
			for _, l := range busy {
				before := l.unavailable.Load()
				waitFor(t, l.env+" to get UNAVAILABLE", func() bool { return l.unavailable.Load() > before+3 })
			}
			// Every key on the token is unavailable together, the idle one too.
			for _, env := range []string{"sim", "sim2"} {
				waitFor(t, env+" health to report NOT_SERVING", func() bool {
					return healthOf(t, health, daemon.HealthService(env)) == healthpb.HealthCheckResponse_NOT_SERVING
				})
			}

			bringBack()
			back := time.Now()
			for _, l := range busy {
				if took := l.resumedWithin(t, back); took > 2*probeInterval {
					t.Errorf("%s signed again %s after the token's return; want within two probe intervals (%s)", l.env, took.Round(time.Millisecond), 2*probeInterval)
				}
			}
			if !tt.bothBusy {
				// The idle environment's next call succeeds at once.
				if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim2", Resource: "https://api.example/idle"}); err != nil {
					t.Fatalf("the idle environment's first call after the return: %v", err)
				}
			}
			for _, l := range busy {
				l.halt()
				if other := l.otherErrors(); len(other) > 0 {
					t.Errorf("%s: errors other than UNAVAILABLE with retry advice: %v", l.env, other)
				}
			}
			for _, service := range []string{"", daemon.HealthService("sim"), daemon.HealthService("sim2")} {
				waitFor(t, fmt.Sprintf("health of %q to report SERVING", service), func() bool {
					return healthOf(t, health, service) == healthpb.HealthCheckResponse_SERVING
				})
			}
		})
	}
}

// TestHealthWithoutTraffic: with no calls at all, an environment's health
// follows its HSM token within two probe intervals, away and back, while
// the other environment, on another token of the same module, stays
// SERVING throughout, and so does the daemon as a whole.
func TestHealthWithoutTraffic(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	other := softhsmtest.NewToken(t)
	other.NewCertifiedKey(t, "eseal", w.CA)
	t.Setenv("PORTVAKT_TEST_PIN_B", other.PIN.Reveal())
	e := prepare(t, w)
	e.edit(t, withEnvironment(t, w, "b", "eseal"), func(cfg string) string {
		hsms := fmt.Sprintf("hsms:\n"+
			"  - {name: a, module: %q, token: %q, pin: {env: PORTVAKT_TEST_PIN}, probe_interval: %s}\n"+
			"  - {name: b, module: %q, token: %q, pin: {env: PORTVAKT_TEST_PIN_B}, probe_interval: %s}",
			w.Token.Module, w.Token.Label, probeInterval, other.Module, other.Label, probeInterval)
		cfg = mustReplace(t, cfg, hsmLine(w), hsms)
		return mustReplace(t, cfg, "{name: sim, ", "{name: sim, hsm: a, ")
	})
	allowBoth(t, e)
	e.serve(t)
	health := healthpb.NewHealthClient(connOf(t, e))
	metrics := "http://" + e.daemon.Addresses()["metrics"] + "/metrics"

	// Watch the other environment and the daemon for the whole outage.
	var watch sync.WaitGroup
	stopWatch := make(chan struct{})
	var otherDown, overallDown atomic.Int64
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if healthOf(t, health, daemon.HealthService("sim2")) != healthpb.HealthCheckResponse_SERVING {
				otherDown.Add(1)
			}
			if healthOf(t, health, "") != healthpb.HealthCheckResponse_SERVING {
				overallDown.Add(1)
			}
		}
	}()

	bringBack := w.Token.TakeAway(t)
	gone := time.Now()
	waitFor(t, "sim's health to report NOT_SERVING", func() bool {
		return healthOf(t, health, daemon.HealthService("sim")) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if took := time.Since(gone); took > 2*probeInterval {
		t.Errorf("health saw the token gone after %s; want within two probe intervals (%s)", took.Round(time.Millisecond), 2*probeInterval)
	}
	families := scrape(t, metrics)
	if up, _ := value(families, "portvakt_hsm_up", map[string]string{"environment": "sim", "hsm": "a"}); up != 0 {
		t.Errorf("portvakt_hsm_up{environment=sim} = %v while its token is away", up)
	}
	if up, _ := value(families, "portvakt_hsm_up", map[string]string{"environment": "sim2", "hsm": "b"}); up != 1 {
		t.Errorf("portvakt_hsm_up{environment=sim2} = %v while only the other token is away", up)
	}
	// Several probes while away: the other token must stay up through the
	// module restarts that looking for this one makes.
	time.Sleep(3 * probeInterval)

	bringBack()
	back := time.Now()
	waitFor(t, "sim's health to report SERVING", func() bool {
		return healthOf(t, health, daemon.HealthService("sim")) == healthpb.HealthCheckResponse_SERVING
	})
	if took := time.Since(back); took > 2*probeInterval {
		t.Errorf("health saw the token back after %s; want within two probe intervals (%s)", took.Round(time.Millisecond), 2*probeInterval)
	}
	close(stopWatch)
	watch.Wait()
	if n := otherDown.Load(); n > 0 {
		t.Errorf("the other environment, on another token, was reported not serving %d times", n)
	}
	if n := overallDown.Load(); n > 0 {
		t.Errorf("the daemon was reported not serving %d times while one environment could sign", n)
	}
	// And it signs: nothing about it was disturbed.
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim2"}); err != nil {
		t.Fatalf("the other environment after the outage: %v", err)
	}
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatalf("the environment whose token came back: %v", err)
	}
}
