package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/selfservice"
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
	e.edit(t, withSettings(fmt.Sprintf("kid: eseal-2026, kid_with_x5c: true, self_service: {url: %q}", w.Issuer+mpsim.SelfServicePath)))
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

// TestSelfServiceKeyInKIDMode: an environment that signs its grants with
// a registered key without a certificate gets the self-service API's
// tokens with grants signed by self_service.key_label, the enterprise
// certificate's key (x5c), and with such a token the registered key is
// put in the integration's set, after which the environment's own grants
// (kid) are accepted. Each signature's record names the key that made it.
// Without self_service.key_label, a token for the API is refused as
// misconfigured, before any fetch.
func TestSelfServiceKeyInKIDMode(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	key, err := hsm.GenerateKey(w.Token.Token, hsm.KeySpec{Label: registeredLabel, Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	kid, err := selfservice.Thumbprint(key.Public)
	if err != nil {
		t.Fatal(err)
	}
	e := prepare(t, w)
	e.edit(t, func(cfg string) string {
		return strings.Replace(cfg, "key_label: eseal}", fmt.Sprintf("key_label: %s, kid: %s, self_service: {url: %q, key_label: eseal}}", registeredLabel, kid, w.Issuer+mpsim.SelfServicePath), 1)
	})
	e.writePolicy(t, defaultPolicy()+"      - environments: [sim]\n        scopes: ["+mpsim.ScopeDCRRead+", "+mpsim.ScopeDCRModify+"]\n")
	e.serve(t)
	api := e.unix.API()
	get := func(scope, resource string) (*portvaktv1.GetTokenResponse, error) {
		return api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{scope}, Environment: "sim", Resource: resource})
	}

	if _, err := get(mptest.ScopeOwn, "https://before.example"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "MP-100") {
		t.Fatalf("a kid grant before the key is registered: %v, want MP-100", err)
	}
	admin, err := get(mpsim.ScopeDCRModify, "")
	if err != nil {
		t.Fatalf("a token for the self-service API: %v", err)
	}
	if amr := accessTokenClaims(t, admin.GetAccessToken())["client_amr"]; amr != mpsim.AMRCertificate {
		t.Fatalf("the self-service token's client_amr %v, want %s: its grant must carry the enterprise certificate", amr, mpsim.AMRCertificate)
	}
	jwk, err := selfservice.NewJWK(key.Public, nil)
	if err != nil {
		t.Fatal(err)
	}
	token := func(context.Context) (secret.Value, error) { return secret.New(admin.GetAccessToken()) }
	c, err := selfservice.New(w.Issuer+mpsim.SelfServicePath, token, selfservice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Replace(t.Context(), mptest.ClientID, []selfservice.JWK{jwk}); err != nil {
		t.Fatalf("registering the key: %v", err)
	}
	own, err := get(mptest.ScopeOwn, "https://after.example")
	if err != nil {
		t.Fatalf("a kid grant after the key was registered: %v", err)
	}
	if amr := accessTokenClaims(t, own.GetAccessToken())["client_amr"]; amr != mpsim.AMRPrivateKeyJWT {
		t.Errorf("the environment's token's client_amr %v, want %s (its registered key)", amr, mpsim.AMRPrivateKeyJWT)
	}
	listed, err := portvaktv1.NewKeyServiceClient(connOf(t, e)).ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil || listed.GetSigningKid() != kid || !listed.GetSigningKeyRegistered() {
		t.Fatalf("ListKeys = %v, %v; want %s registered and in use", listed, err, kid)
	}
	labels := map[string]string{} // scope → the signing key's label
	for _, r := range auditOf(t, e) {
		if r.Kind == audit.KindSignature {
			labels[strings.Join(r.Scopes, " ")] = r.KeyLabel
		}
	}
	if labels[mpsim.ScopeDCRModify] != "eseal" || labels[mptest.ScopeOwn] != registeredLabel {
		t.Errorf("signature records by scope name keys %v; want the self-service grant signed by eseal, the environment's by %s", labels, registeredLabel)
	}
}

// TestSelfServiceTokenWithoutCertificate: in an environment that signs
// with a registered key without a certificate, and has no
// self_service.key_label, a token for the self-service API is refused as
// misconfigured, saying what to set, and nothing is signed or posted.
func TestSelfServiceTokenWithoutCertificate(t *testing.T) {
	kw := newKIDWorld(t)
	e := prepare(t, kw.World)
	e.edit(t, kw.useRegisteredKey(""))
	e.writePolicy(t, defaultPolicy()+"      - environments: [sim]\n        scopes: ["+mpsim.ScopeDCRRead+"]\n")
	e.serve(t)
	_, err := e.unix.API().GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mpsim.ScopeDCRRead}, Environment: "sim"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "self_service.key_label") {
		t.Fatalf("a self-service token without a certificate: %v, want FailedPrecondition naming self_service.key_label", err)
	}
	if n := len(kw.grantHeaders()); n != 0 {
		t.Errorf("%d grants posted, want none", n)
	}
}

// TestRegisterKey: RegisterKey makes a key in the environment's HSM and
// adds it to the integration's set beside the keys there, each step on
// the audit log (created, registering, registered, with the kid); asked
// again it changes nothing; the set never holds more than 5 keys; and a
// caller the policy does not grant idporten:dcr.modify is refused before
// any key is made or anything asked of Digdir.
func TestRegisterKey(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	e.edit(t, withSettings(fmt.Sprintf("self_service: {url: %q}", w.Issuer+mpsim.SelfServicePath)))
	grant := "      - environments: [sim]\n        scopes: [" + mpsim.ScopeDCRRead + ", " + mpsim.ScopeDCRModify + "]\n"
	e.writePolicy(t, defaultPolicy()+grant)
	e.serve(t)
	keys := portvaktv1.NewKeyServiceClient(connOf(t, e))
	register := func(label string) (*portvaktv1.RegisterKeyResponse, error) {
		return keys.RegisterKey(t.Context(), &portvaktv1.RegisterKeyRequest{Environment: "sim", KeyLabel: label, Bits: 2048})
	}

	first, err := register("registered-2027")
	if err != nil {
		t.Fatal(err)
	}
	if !first.GetCreated() || !first.GetRegistered() || len(first.GetKid()) != 43 || len(first.GetKeys().GetKeys()) != 1 || first.GetKeys().GetKeys()[0].GetKid() != first.GetKid() {
		t.Fatalf("RegisterKey = %v; want the key made, registered, alone in the set", first)
	}
	again, err := register("registered-2027")
	if err != nil || again.GetCreated() || again.GetRegistered() || again.GetKid() != first.GetKid() {
		t.Fatalf("RegisterKey again = %v, %v; want the same kid, nothing made or changed", again, err)
	}
	var steps []string
	for _, r := range auditOf(t, e) {
		if r.Kind == audit.KindKey {
			if r.KID != first.GetKid() || r.KeyLabel != "registered-2027" || r.Environment != "sim" || r.Method != portvaktv1.KeyService_RegisterKey_FullMethodName {
				t.Errorf("a key record %+v: want kid %s, the label, the environment and the method", r, first.GetKid())
			}
			steps = append(steps, r.Outcome)
		}
	}
	if strings.Join(steps, ",") != "created,registering,registered" {
		t.Errorf("key records %v, want created, registering, registered", steps)
	}

	// Asked for no size, a registered key is made with Digdir's: 2048 bits.
	if _, err := keys.RegisterKey(t.Context(), &portvaktv1.RegisterKeyRequest{Environment: "sim", KeyLabel: "registered-2"}); err != nil {
		t.Fatal(err)
	}
	listed, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(listed.GetTokenKeys(), func(k *portvaktv1.TokenKey) bool { return k.GetLabel() == "registered-2" }); i < 0 || listed.GetTokenKeys()[i].GetBits() != 2048 {
		t.Errorf("a key registered with no size asked for: %v; want 2048 bits, the size Digdir documents for registered keys", listed.GetTokenKeys())
	}
	for i := 3; i <= 5; i++ {
		if _, err := register(fmt.Sprintf("registered-%d", i)); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if _, err := register("registered-6"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "holds 5 keys already") {
		t.Fatalf("a sixth key: %v, want FailedPrecondition: 5 keys already", err)
	}

	// Without the self-service scopes (the reload seen by ListKeys), no key
	// is made and nothing is asked of Digdir.
	e.writePolicy(t, defaultPolicy())
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := keys.ListKeys(t.Context(), &portvaktv1.ListKeysRequest{Environment: "sim"}); status.Code(err) == codes.PermissionDenied {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("ListKeys after the policy lost the self-service scopes: %v", err)
		}
	}
	before := w.Sim.Stats().SelfServiceRequests
	if _, err := register("never-made"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("RegisterKey without idporten:dcr.modify: %v, want PermissionDenied", err)
	}
	if n := w.Sim.Stats().SelfServiceRequests - before; n != 0 {
		t.Errorf("a refused RegisterKey made %d requests to the self-service API", n)
	}
	for _, r := range auditOf(t, e) {
		if r.Kind == audit.KindKey && (r.KeyLabel == "never-made" || r.KeyLabel == "registered-6") {
			t.Errorf("a key record for a refused request: %+v", r)
		}
	}
}
