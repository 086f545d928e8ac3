package daemon_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// withHealthListener adds listen.health on a free loopback port.
func withHealthListener(cfg string) string {
	return strings.Replace(cfg, "listen:\n", "listen:\n  health: {address: \"127.0.0.1:0\"}\n", 1)
}

// healthListenerConn is a plaintext connection to listen.health: no client
// certificate, no socket credentials.
func healthListenerConn(t *testing.T, e *env) *grpc.ClientConn {
	t.Helper()
	addr, ok := e.daemon.Addresses()["health"]
	if !ok {
		t.Fatalf("no health listener among %v", e.daemon.Addresses())
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestHealthListenerAnswersWithoutCredentials: listen.health answers
// Check for the whole daemon, its service, each environment and the
// liveness name over plaintext, from the same health server as the other
// listeners, and its state follows the daemon's (an HSM gone shows there).
func TestHealthListenerAnswersWithoutCredentials(t *testing.T) {
	// The daemon is the module's only user, as it is in production.
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w, withHealthListener, withProbe(t, w))
	health := healthpb.NewHealthClient(healthListenerConn(t, e))
	onSocket := healthpb.NewHealthClient(connOf(t, e))

	waitFor(t, "the daemon to report SERVING", func() bool {
		return healthOf(t, health, "") == healthpb.HealthCheckResponse_SERVING
	})
	for _, service := range []string{"", portvaktv1.TokenService_ServiceDesc.ServiceName, daemon.HealthService("sim"), daemon.LivenessService} {
		if got := healthOf(t, health, service); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health listener: %q is %s, want SERVING", service, got)
		}
		if got, want := healthOf(t, health, service), healthOf(t, onSocket, service); got != want {
			t.Errorf("%q: %s on the health listener, %s on the socket", service, got, want)
		}
	}
	_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: daemon.HealthService("nope")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("an unknown environment: %v, want NotFound", err)
	}

	// The HSM goes away: the environment, and the daemon with it, turn
	// NOT_SERVING (readiness), while the liveness name stays SERVING, so
	// that a liveness probe does not restart a daemon waiting for its HSM.
	bringBack := w.Token.TakeAway(t)
	defer bringBack()
	waitFor(t, "the environment to turn NOT_SERVING", func() bool {
		return healthOf(t, health, daemon.HealthService("sim")) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if got := healthOf(t, health, ""); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("the daemon with its only HSM gone: %s, want NOT_SERVING", got)
	}
	if got := healthOf(t, health, daemon.LivenessService); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("liveness with the HSM gone: %s, want SERVING", got)
	}
}

// TestHealthListenerServesNothingElse: no token and no reflection on the
// health listener, which has no caller identity to check.
func TestHealthListenerServesNothingElse(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w, withHealthListener)
	conn := healthListenerConn(t, e)

	_, err := portvaktv1.NewTokenServiceClient(conn).GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetToken on the health listener: %v, want Unimplemented", err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err == nil {
		// Send's io.EOF means the server ended the stream: its status
		// comes from Recv (grpc.ClientStream.SendMsg).
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("reflection on the health listener: %v, want Unimplemented", err)
	}
	// The socket still serves the API as before.
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatalf("a call on the socket: %v", err)
	}
}
