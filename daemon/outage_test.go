package daemon_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestHSMOutage: while the HSM is away, callers that need a signature get
// UNAVAILABLE with retry advice and health says NOT_SERVING; when it is
// back, both recover without a restart.
func TestHSMOutage(t *testing.T) {
	// The daemon is the module's only user, as it is in production.
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w)
	health := healthpb.NewHealthClient(connOf(t, e))
	fresh := func(i int) *portvaktv1.GetTokenRequest {
		return &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d", i)}
	}
	if _, _, err := call(t, e, fresh(0)); err != nil {
		t.Fatal(err)
	}

	dir := softhsmtest.Dir().TokenDir()
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	bringBack := func() {
		once.Do(func() {
			if err := os.Rename(dir+".away", dir); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(bringBack)

	_, _, err := call(t, e, fresh(1))
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "retry with back-off") {
		t.Fatalf("a fetch with the HSM away: %v, want UNAVAILABLE with retry advice", err)
	}
	waitFor(t, "health to report NOT_SERVING", func() bool {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// A token already cached is still served: it needs no signature.
	if _, _, err := call(t, e, fresh(0)); err != nil {
		t.Fatalf("a cached token while the HSM is away: %v", err)
	}

	bringBack()
	i := 2
	waitFor(t, "signing to resume", func() bool {
		i++
		_, _, err := call(t, e, fresh(i))
		return err == nil
	})
	waitFor(t, "health to report SERVING", func() bool {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	if got, _ := value(scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics"), "portvakt_hsm_reconnects_total", nil); got < 1 {
		t.Fatalf("portvakt_hsm_reconnects_total = %v after an outage", got)
	}
}

// TestMaskinportenOutage: 5xx from Maskinporten reaches the caller as
// UNAVAILABLE with retry advice, after the client's own retries.
func TestMaskinportenOutage(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w, func(cfg string) string {
		return cfg + "maskinporten: {max_attempts: 2}\n"
	})
	w.Sim.SetFaults(mpsim.Faults{ServerErrorRate: 1})
	_, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "Maskinporten is unavailable") {
		t.Fatalf("Maskinporten answering 503: %v", err)
	}
	if n := len(w.Sim.Stats().JTIs); n != 2 {
		t.Fatalf("%d attempts, want the configured 2", n)
	}
}
