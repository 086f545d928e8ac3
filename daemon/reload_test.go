package daemon_test

import (
	"strings"
	"testing"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestReloadRefusesUnservedEnvironment: a policy naming an environment
// the daemon does not serve is refused at a reload as at start: the
// policy in force stays, and the refusal is counted and logged.
func TestReloadRefusesUnservedEnvironment(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w)
	metrics := "http://" + e.daemon.Addresses()["metrics"] + "/metrics"
	e.writePolicy(t, strings.ReplaceAll(defaultPolicy(), "environments: [sim]", "environments: [sim, prdo]"))
	waitFor(t, "the reload to be refused", func() bool {
		got, _ := value(scrape(t, metrics), "portvakt_policy_reloads_total", map[string]string{"result": "failed"})
		return got >= 1
	})
	if !strings.Contains(e.logs.String(), "does not serve: prdo") {
		t.Fatalf("the log does not say why the reload was refused:\n%s", e.logs.String())
	}
	// The policy in force is the one before.
	if envs := e.daemon.Policies().Current().Environments(); len(envs) != 1 || envs[0] != "sim" {
		t.Fatalf("the policy in force names %v, want the old [sim]", envs)
	}
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatalf("a call after the refused reload: %v", err)
	}
	if got, _ := value(scrape(t, metrics), "portvakt_policy_watching", nil); got != 1 {
		t.Fatalf("portvakt_policy_watching = %v while the watch runs", got)
	}
}
