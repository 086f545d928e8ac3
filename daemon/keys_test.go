package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestListKeys: KeyService.ListKeys reads the environment's registered
// keys from the simulator's self-service API with a token for
// idporten:dcr.read that the daemon got for the caller as GetToken gets
// any (the policy's decision, an HSM-signed x5c grant, the audit), and
// marks the key it signs with. A caller the policy does not grant the
// scope is refused before anything is asked of Digdir.
func TestListKeys(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true, ESealKID: "eseal-2026"})
	e := prepare(t, w)
	e.edit(t, withSettings(fmt.Sprintf("kid: eseal-2026, kid_with_x5c: true, self_service_url: %q", w.Issuer+mpsim.SelfServicePath)))
	e.writePolicy(t, defaultPolicy()+"      - environments: [sim]\n        scopes: ["+mpsim.ScopeDCRRead+"]\n")
	e.serve(t)
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))

	resp, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetClientId() != mptest.ClientID || resp.GetSigningKid() != "eseal-2026" || !resp.GetSigningKeyRegistered() ||
		len(resp.GetKeys()) != 1 || !resp.GetKeys()[0].GetInUse() || resp.GetKeys()[0].GetBits() < 2048 {
		t.Fatalf("ListKeys = %v; want the eSeal's key registered as eseal-2026 and in use", resp)
	}
	if st := w.Sim.Stats(); st.SelfServiceRequests != 1 {
		t.Errorf("%d requests to the self-service API, want 1", st.SelfServiceRequests)
	}
	var found bool
	for _, r := range auditOf(t, e) {
		if r.Kind == audit.KindDecision && r.Method == portvaktv1.KeyService_ListKeys_FullMethodName && strings.Join(r.Scopes, " ") == mpsim.ScopeDCRRead && r.Decision == "allow" {
			found = true
		}
	}
	if !found {
		t.Errorf("no allowed decision for %s by %s on record", mpsim.ScopeDCRRead, portvaktv1.KeyService_ListKeys_FullMethodName)
	}

	_, err = keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "nowhere"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown environment "nowhere"`) {
		t.Errorf("an unknown environment: %v", err)
	}
	e.writePolicy(t, defaultPolicy())
	// The policy reloads on its own when its file changes.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListKeys after the policy lost %s: %v, want PermissionDenied", mpsim.ScopeDCRRead, err)
		}
	}
	before := w.Sim.Stats().SelfServiceRequests
	if _, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ListKeys denied again: %v", err)
	}
	if after := w.Sim.Stats().SelfServiceRequests; after != before {
		t.Errorf("a denied ListKeys made %d requests to the self-service API, want none", after-before)
	}
}
