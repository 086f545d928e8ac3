package daemon_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestEndToEnd calls the daemon over both transports, as a service would,
// with tokens from the simulator signed in SoftHSM2.
func TestEndToEnd(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	transports := map[string]*client.Client{"unix": e.unix, "mtls": e.mtls}

	tests := []struct {
		name string
		req  client.Request
		code codes.Code
		msg  string // in the status message
	}{
		{"allowed", client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}, codes.OK, ""},
		{"environment left out with one configured", client.Request{Scopes: []string{mptest.ScopeOwn}}, codes.OK, ""},
		{"delegated", client.Request{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim", ConsumerOrg: mptest.ConsumerOrg}, codes.OK, ""},
		{"denied scope", client.Request{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"}, codes.PermissionDenied, mptest.ScopeElsewhere},
		{"wrong consumer_org", client.Request{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim", ConsumerOrg: mptest.StrangerOrg}, codes.PermissionDenied, "denied by policy"},
		{"no scope", client.Request{Environment: "sim"}, codes.InvalidArgument, "scopes:"},
		{"malformed scope", client.Request{Scopes: []string{"ecoc"}, Environment: "sim"}, codes.InvalidArgument, "scopes:"},
		{"consumer_org with a bad check digit", client.Request{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim", ConsumerOrg: "974760674"}, codes.InvalidArgument, "consumer_org:"},
		{"relative resource", client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "vegvesen"}, codes.InvalidArgument, "resource:"},
		{"min validity beyond any token", client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", MinValidity: 5 * time.Hour}, codes.InvalidArgument, "min_validity:"},
		{"unknown environment", client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "prod"}, codes.InvalidArgument, `unknown environment "prod"`},
		{"maskinporten refuses", client.Request{Scopes: []string{mptest.ScopeNotGranted}, Environment: "sim"}, codes.FailedPrecondition, "MP-200"},
	}
	for transport, c := range transports {
		for _, tt := range tests {
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				tok, err := c.Token(t.Context(), tt.req)
				if code := status.Code(err); code != tt.code {
					t.Fatalf("code = %v (%v), want %v", code, err, tt.code)
				}
				if tt.code != codes.OK {
					if !strings.Contains(status.Convert(err).Message(), tt.msg) {
						t.Fatalf("message %q does not say %q", status.Convert(err).Message(), tt.msg)
					}
					if tt.code == codes.FailedPrecondition {
						assertMPDetail(t, err, tt.msg)
					}
					return
				}
				if tok.AccessToken == "" || tok.TokenType != "Bearer" || time.Until(tok.Expiry) < time.Minute {
					t.Fatalf("token %+v", tok)
				}
			})
		}
	}
}

func TestUntrustedOrMissingClientCertificate(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	noCert := e.tlsOpts
	noCert.CertFile, noCert.KeyFile = "", ""
	for name, opts := range map[string]client.Options{"untrusted certificate": e.untrusted} {
		t.Run(name, func(t *testing.T) {
			_, err := dial(t, opts).Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeOwn}})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call with an untrusted client certificate: %v, want the TLS handshake refused", err)
			}
		})
	}
	t.Run("no certificate", func(t *testing.T) {
		if _, err := client.Dial(noCert); err == nil || !strings.Contains(err.Error(), "client certificate") {
			t.Fatalf("Dial without a client certificate: %v", err)
		}
		// Below the client package: a TLS connection offering no certificate.
		_, err := rawNoCertCall(t, e)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call without a client certificate: %v, want the handshake refused", err)
		}
	})
	if n := w.Sim.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests reached Maskinporten from refused callers", n)
	}
}

func TestWhoAmIAndOperatorView(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	who, err := e.unix.API().WhoAmI(t.Context(), &portvaktv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if who.GetTransport() != "unix" || who.GetClient() != "billing" || who.GetIdentities()[0] != fmt.Sprintf("uid:%d", os.Getuid()) || len(who.GetGrants()) != 2 {
		t.Fatalf("WhoAmI over unix = %v", who)
	}
	who, err = e.mtls.API().WhoAmI(t.Context(), &portvaktv1.WhoAmIRequest{})
	if err != nil || who.GetTransport() != "mtls" || who.GetIdentities()[0] != billingID || who.GetClient() != "billing" {
		t.Fatalf("WhoAmI over mTLS = %v, %v", who, err)
	}
	envs, err := e.mtls.API().ListEnvironments(t.Context(), &portvaktv1.ListEnvironmentsRequest{})
	if err != nil || len(envs.GetEnvironments()) != 1 {
		t.Fatalf("ListEnvironments = %v, %v", envs, err)
	}
	sim := envs.GetEnvironments()[0]
	if sim.GetName() != "sim" || sim.GetClientId() != mptest.ClientID || sim.GetOrgNumber() != mptest.OwnOrg || len(sim.GetCertificateSha256()) != 64 || sim.GetKeyLabel() != "eseal" {
		t.Fatalf("operator view = %v", sim)
	}
	health, err := healthpb.NewHealthClient(connOf(t, e)).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "portvakt.v1.TokenService"})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", health, err)
	}
}

// TestPolicyReload: a valid change applies without a restart; a broken
// file keeps the old policy in force.
func TestPolicyReload(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	own := client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	if _, err := e.unix.Token(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	// Take ScopeOwn away.
	e.writePolicy(t, strings.Replace(defaultPolicy(), mptest.ScopeOwn+", ", "", 1))
	waitFor(t, "the new policy to deny", func() bool {
		_, err := e.unix.Token(t.Context(), own)
		return status.Code(err) == codes.PermissionDenied
	})
	// A broken file: the last good policy (which denies) stays in force.
	e.writePolicy(t, "clients:\n  - name: billing\n    identities: [\n")
	if err := e.daemon.Policies().Reload(); err == nil {
		t.Fatal("Reload of a broken policy succeeded")
	}
	if _, err := e.unix.Token(t.Context(), own); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after a broken reload: %v, want the last good policy's denial", err)
	}
	// And the delegated rule of the last good policy still allows.
	if _, err := e.unix.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeDelegated}, ConsumerOrg: mptest.ConsumerOrg}); err != nil {
		t.Fatalf("the last good policy's other rule: %v", err)
	}
}

// TestGracefulShutdown: a call in flight when the daemon is told to stop
// still gets its token.
func TestGracefulShutdown(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	w.Sim.SetFaults(mpsimLatency(500 * time.Millisecond))
	result := make(chan error, 1)
	go func() {
		_, err := e.unix.Token(context.Background(), client.Request{Scopes: []string{mptest.ScopeOwn}})
		result <- err
	}()
	waitFor(t, "the call to reach Maskinporten", func() bool { return w.Sim.Stats().TokenRequests == 1 })
	e.cancel()
	if err := <-result; err != nil {
		t.Fatalf("the call in flight at shutdown failed: %v", err)
	}
	if err := <-e.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	e.done <- nil
	if _, err := os.Stat(e.daemon.Addresses()["unix"]); !os.IsNotExist(err) {
		t.Fatalf("the socket file is left behind: %v", err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // a hang guard, not a speed claim
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertMPDetail checks that a Maskinporten refusal carries its MP code
// as a machine-readable detail.
func assertMPDetail(t *testing.T, err error, mpCode string) {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetMetadata()["mp_code"] == mpCode && info.GetDomain() == "maskinporten.no" && info.GetMetadata()["trace_id"] != "" {
			return
		}
	}
	t.Fatalf("no ErrorInfo with mp_code %s in %v", mpCode, status.Convert(err).Details())
}
