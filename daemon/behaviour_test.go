package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

func TestTokenSourceReusesItsToken(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	src := e.unix.TokenSource(client.Request{Scopes: []string{mptest.ScopeOwn}})
	first, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	second, err := src.Token()
	if err != nil || second.AccessToken != first.AccessToken || !first.Valid() {
		t.Fatalf("second Token() = %v, %v; want the first, still valid", second, err)
	}
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		t.Fatalf("%d token requests for one token source", n)
	}
}

func TestSocketPermission(t *testing.T) {
	e := startDaemon(t, mptest.New(t, mptest.Options{}))
	info, err := os.Stat(e.daemon.Addresses()["unix"])
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a socket with 0660", info.Mode())
	}
}

// TestDeadlinesAreHonoured: a caller's deadline ends its wait, and the
// fetch it started still completes for the next caller.
func TestDeadlinesAreHonoured(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	w.Sim.SetFaults(mpsim.Faults{Latency: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := e.unix.Token(ctx, client.Request{Scopes: []string{mptest.ScopeOwn}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call with a 100 ms deadline against a 1 s Maskinporten: %v", err)
	}
	waitFor(t, "the abandoned fetch to be cached", func() bool { return w.Sim.Stats().Issued == 1 })
	w.Sim.SetFaults(mpsim.Faults{})
	if _, err := e.unix.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeOwn}}); err != nil {
		t.Fatal(err)
	}
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		t.Fatalf("%d token requests; the second caller should have had the first fetch's token", n)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	e := startDaemon(t, mptest.New(t, mptest.Options{}))
	huge := &portvaktv1.GetTokenRequest{Scopes: []string{"svv:" + strings.Repeat("x", 100<<10)}}
	if _, err := e.unix.API().GetToken(t.Context(), huge); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 100 KiB request: %v, want ResourceExhausted", err)
	}
}

// TestStartFailuresSayWhatToFix: each thing checked at start stops it with
// one line naming the problem.
func TestStartFailuresSayWhatToFix(t *testing.T) {
	// PKCS#11 logins belong to the process: while a signer of the world's
	// own were logged in, any PIN would do. Without one the PIN is checked.
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w) // a working configuration to break
	e.stop()
	base, err := os.ReadFile(filepath.Join(e.dir, "portvakt.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, cfg string) string
		want   string
	}{
		{"wrong PIN", func(t *testing.T, cfg string) string {
			t.Setenv("PORTVAKT_TEST_PIN", "wrong-pin-123")
			return cfg
		}, "refused the PIN"},
		{"no such key", func(t *testing.T, cfg string) string {
			return strings.Replace(cfg, "key_label: eseal", "key_label: esael", 1)
		}, `no private key label "esael"`},
		{"no such token", func(t *testing.T, cfg string) string {
			return strings.Replace(cfg, "token: \""+w.Token.Label+"\"", "token: \"nope\"", 1)
		}, `no token is labelled "nope"`},
		{"policy names an environment not served", func(t *testing.T, cfg string) string {
			e.writePolicy(t, strings.ReplaceAll(defaultPolicy(), "[sim]", "[prod]"))
			return cfg
		}, "the policy names environments this daemon does not serve: prod"},
		{"invalid policy", func(t *testing.T, cfg string) string {
			e.writePolicy(t, "clients: []\n")
			return cfg
		}, "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.writePolicy(t, defaultPolicy())
			t.Setenv("PORTVAKT_TEST_PIN", w.Token.PIN.Reveal())
			body := tt.change(t, string(base))
			path := filepath.Join(t.TempDir(), "portvakt.yaml")
			body = strings.ReplaceAll(body, "policy: policy.yaml", "policy: "+e.policyFile)
			body = strings.ReplaceAll(body, ": server", ": "+e.dir+"/server")
			body = strings.ReplaceAll(body, "client_ca_file: ca.pem", "client_ca_file: "+e.dir+"/ca.pem")
			body = strings.ReplaceAll(body, "path: portvakt.sock", "path: "+e.dir+"/t.sock")
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err == nil {
				err = resolveDevelopmentHSMs(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := daemon.New(cfg, daemon.Options{})
			if err == nil {
				d.Close()
				t.Fatal("the daemon started")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") && tt.name != "invalid policy" {
				t.Fatalf("start error = %q, want one line saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), w.Token.PIN.Reveal()) || strings.Contains(err.Error(), "wrong-pin-123") {
				t.Fatal("the start error reveals a PIN")
			}
		})
	}
}
