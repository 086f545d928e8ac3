package daemon_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
)

// checkOf runs the check on e's configuration, as `serve --check` does.
func checkOf(t *testing.T, e *env) *daemon.CheckReport {
	t.Helper()
	return daemon.Check(t.Context(), e.loadConfig(t), daemon.CheckOptions{})
}

// checksNamed are the report's checks of that name (and environment, if
// given).
func checksNamed(r *daemon.CheckReport, name, env string) []daemon.CheckResult {
	var found []daemon.CheckResult
	for _, c := range r.Checks {
		if c.Name == name && (env == "" || c.Environment == env) {
			found = append(found, c)
		}
	}
	return found
}

// failures lists the report's failed checks, for a test's message.
func failures(r *daemon.CheckReport) string {
	var b strings.Builder
	for _, c := range r.Checks {
		if c.Status == daemon.CheckFailed {
			fmt.Fprintf(&b, "\n  %s [%s]: %s", c.Name, c.Environment, c.Detail)
		}
	}
	return b.String()
}

// unreachableURL is an http URL on which nothing listens: connecting to
// it is refused.
func unreachableURL(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return "http://" + addr + "/"
}

// certificateFileExpiringIn writes the test eSeal's chain, certified
// again for validity from now, to a file in dir, returning its name.
func certificateFileExpiringIn(t *testing.T, w *mptest.World, dir string, validity time.Duration) string {
	t.Helper()
	name := "soon.pem"
	if err := os.WriteFile(filepath.Join(dir, name), w.ESealChainPEM(t, validity), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestCheckReport: the check's report on a configuration says what is
// wrong with it, each problem in its own check naming what it concerns.
func TestCheckReport(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	simEnv := func(w *mptest.World) string {
		return fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", w.Issuer, w.Endpoint, mptest.ClientID)
	}
	tests := []struct {
		name string
		edit func(t *testing.T, e *env, cfg string) string
		// want is one check that must be in the report, with its status and
		// what its detail must hold.
		wantName, wantEnv string
		wantStatus        daemon.CheckStatus
		wantDetail        []string
		failed            bool
	}{
		{
			name:     "as prepared",
			edit:     func(_ *testing.T, _ *env, cfg string) string { return cfg },
			wantName: "audit log", wantStatus: daemon.CheckOK, wantDetail: []string{"no log yet"},
		},
		{
			name: "token endpoint unreachable",
			edit: func(t *testing.T, _ *env, cfg string) string {
				u := unreachableURL(t)
				return mustReplace(t, cfg, simEnv(w), fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", u, u+"token", mptest.ClientID))
			},
			wantName: "token endpoint", wantEnv: "sim", wantStatus: daemon.CheckFailed, wantDetail: []string{"/token cannot be reached", "connection refused"},
			failed: true,
		},
		{
			name: "issuer unreachable for discovery",
			edit: func(t *testing.T, _ *env, cfg string) string {
				u := unreachableURL(t)
				return mustReplace(t, cfg, simEnv(w), fmt.Sprintf("  - {name: sim, issuer: %q, discovery: true, client_id: %q, key_label: eseal}\n", u, mptest.ClientID))
			},
			wantName: "discovery", wantEnv: "sim", wantStatus: daemon.CheckFailed, wantDetail: []string{".well-known/oauth-authorization-server"},
			failed: true,
		},
		{
			name: "discovery",
			edit: func(t *testing.T, _ *env, cfg string) string {
				return mustReplace(t, cfg, simEnv(w), fmt.Sprintf("  - {name: sim, issuer: %q, discovery: true, client_id: %q, key_label: eseal}\n", w.Issuer, mptest.ClientID))
			},
			wantName: "token endpoint", wantEnv: "sim", wantStatus: daemon.CheckOK, wantDetail: []string{w.Endpoint + " answers (HTTP 400"},
		},
		{
			name: "self-service API named",
			edit: func(t *testing.T, _ *env, cfg string) string {
				return mustReplace(t, cfg, "key_label: eseal}", fmt.Sprintf("key_label: eseal, self_service: {url: %q}}", w.Issuer+mpsim.SelfServicePath))
			},
			wantName: "self-service API", wantEnv: "sim", wantStatus: daemon.CheckOK,
			wantDetail: []string{w.Issuer + mpsim.SelfServicePath + "clients/" + mptest.ClientID + "/jwks answers (HTTP 401"},
		},
		{
			name: "self-service API named but unreachable",
			edit: func(t *testing.T, _ *env, cfg string) string {
				return mustReplace(t, cfg, "key_label: eseal}", fmt.Sprintf("key_label: eseal, self_service: {url: %q}}", unreachableURL(t)+"api/v1/"))
			},
			wantName: "self-service API", wantEnv: "sim", wantStatus: daemon.CheckWarning,
			wantDetail: []string{"cannot be reached", "keys list and keys register need", "connection refused"},
		},
		{
			name: "self-service API unreachable for a rotation",
			edit: func(t *testing.T, _ *env, cfg string) string {
				return mustReplace(t, cfg, "key_label: eseal}", fmt.Sprintf("key_label: eseal, kid: registered-1, self_service: {url: %q, key_label: eseal}, rotation: {}}", unreachableURL(t)+"api/v1/"))
			},
			wantName: "self-service API", wantEnv: "sim", wantStatus: daemon.CheckFailed,
			wantDetail: []string{"cannot be reached", "the key rotation needs", "connection refused"},
			failed:     true,
		},
		{
			name: "certificate 9 days from expiry",
			edit: func(t *testing.T, e *env, cfg string) string {
				file := certificateFileExpiringIn(t, w, e.dir, 9*24*time.Hour+12*time.Hour)
				cfg = mustReplace(t, cfg, "key_label: eseal}", "key_label: eseal, certificate_file: "+file+"}")
				return cfg + "certificates: {warn_before: 720h}\n"
			},
			wantName: "certificate", wantEnv: "sim", wantStatus: daemon.CheckWarning, wantDetail: []string{"expires on", "in 9 days", "warn_before, 30 days", "portvakt hsm import-cert"},
		},
		{
			name: "tracing asked of an exporter the daemon has not",
			edit: func(t *testing.T, _ *env, cfg string) string {
				t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
				return cfg
			},
			wantName: "tracing", wantStatus: daemon.CheckFailed, wantDetail: []string{"OTEL_TRACES_EXPORTER", "zipkin"},
			failed: true,
		},
		{
			name: "wrong PIN",
			edit: func(t *testing.T, _ *env, cfg string) string {
				t.Setenv("PORTVAKT_TEST_PIN", "not-the-pin")
				return cfg
			},
			wantName: "hsm", wantStatus: daemon.CheckFailed, wantDetail: []string{"HSM default: ", "the user PIN from hsm pin environment variable PORTVAKT_TEST_PIN", "CKR_PIN_INCORRECT"},
			failed: true,
		},
		{
			name: "policy names an unknown environment",
			edit: func(t *testing.T, e *env, cfg string) string {
				e.writePolicy(t, strings.ReplaceAll(defaultPolicy(), "environments: [sim]", "environments: [sim, prod]"))
				return cfg
			},
			wantName: "policy environments", wantStatus: daemon.CheckFailed, wantDetail: []string{"prod"},
			failed: true,
		},
		{
			name: "metrics address taken by another process",
			edit: func(t *testing.T, _ *env, cfg string) string {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { lis.Close() })
				return mustReplace(t, cfg, `metrics: {address: "127.0.0.1:0"}`, fmt.Sprintf("metrics: {address: %q}", lis.Addr()))
			},
			wantName: "metrics.address", wantStatus: daemon.CheckFailed, wantDetail: []string{"address already in use"},
			failed: true,
		},
		{
			name: "audit log edited",
			edit: func(t *testing.T, e *env, cfg string) string {
				file := filepath.Join(e.dir, "audit", "audit.log")
				w, err := audit.Open(audit.Options{Path: file})
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if _, err := w.Append(audit.Record{Kind: audit.KindStart}); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.SplitAfter(string(data), "\n")
				lines[1] = strings.Replace(lines[1], `"seq":2`, `"seq":2,"x":1`, 1)
				if err := os.WriteFile(file, []byte(strings.Join(lines, "")), 0o600); err != nil {
					t.Fatal(err)
				}
				return cfg
			},
			wantName: "audit log", wantStatus: daemon.CheckFailed, wantDetail: []string{"audit.log:2: ", "portvakt audit verify"},
			failed: true,
		},
		{
			name: "socket path is not a socket",
			edit: func(t *testing.T, e *env, cfg string) string {
				if err := os.WriteFile(filepath.Join(e.dir, "portvakt.sock"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return cfg
			},
			wantName: "listen.unix.path", wantStatus: daemon.CheckFailed, wantDetail: []string{"is not a socket"},
			failed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := prepare(t, w)
			e.edit(t, func(cfg string) string { return tt.edit(t, e, cfg) })
			before := snapshot(t, e.dir, nil)
			r := checkOf(t, e)
			if got := r.Failed() > 0; got != tt.failed {
				t.Errorf("failed = %v, want %v:%s", got, tt.failed, failures(r))
			}
			found := checksNamed(r, tt.wantName, tt.wantEnv)
			if len(found) != 1 {
				t.Fatalf("%d checks %q (environment %q) in the report, want 1: %+v", len(found), tt.wantName, tt.wantEnv, r.Checks)
			}
			c := found[0]
			if c.Status != tt.wantStatus {
				t.Errorf("%s: status %s, want %s: %s", c.Name, c.Status, tt.wantStatus, c.Detail)
			}
			for _, want := range tt.wantDetail {
				if !strings.Contains(c.Detail, want) {
					t.Errorf("%s: detail %q does not hold %q", c.Name, c.Detail, want)
				}
			}
			for _, c := range r.Checks {
				if pin := w.Token.PIN.Reveal(); strings.Contains(c.Detail, pin) || strings.Contains(c.Detail, "not-the-pin") {
					t.Errorf("%s: the detail holds the PIN", c.Name)
				}
			}
			sameSnapshot(t, "the configuration's directory", before, snapshot(t, e.dir, nil))
		})
	}
}
