package daemon_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
)

// TestOwnBehalfDelegatedScope: a consumer gets a .delegert token on its own
// behalf from a rule without consumer_orgs, and a supplier's rule (with
// consumer_orgs) still allows the scope only for a consumer it names.
func TestOwnBehalfDelegatedScope(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	// The Unix peer is the consumer, the mTLS client the supplier.
	e.writePolicy(t, fmt.Sprintf(`clients:
  - name: consumer
    identities: ["uid:%d"]
    rules:
      - environments: [sim]
        scopes: [%s]
  - name: supplier
    identities: [%q]
    rules:
      - environments: [sim]
        scopes: [%s]
        consumer_orgs: ["%s"]
`, os.Getuid(), mptest.ScopeDelegated, billingID, mptest.ScopeDelegated, mptest.ConsumerOrg))
	e.serve(t)

	own := client.Request{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim"}
	tok, err := e.unix.Token(t.Context(), own)
	if err != nil {
		t.Fatalf("consumer asking for %s on its own behalf: %v", mptest.ScopeDelegated, err)
	}
	claims := accessTokenClaims(t, tok.AccessToken)
	if claims["scope"] != mptest.ScopeDelegated || consumerOf(claims) != "0192:"+mptest.OwnOrg || claims["supplier"] != nil {
		t.Errorf("token claims %v: want scope %s for the client's own organisation, not delegated", claims, mptest.ScopeDelegated)
	}

	// The consumer's own-behalf rule does not let it name a consumer.
	_, err = e.unix.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim", ConsumerOrg: mptest.ConsumerOrg})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("consumer naming a consumer_org: %v, want PERMISSION_DENIED", err)
	}

	// The supplier without consumer_org: denied by the policy, before
	// Maskinporten (which would have granted it: the client has the scope).
	_, err = e.mtls.Token(t.Context(), own)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "denied by policy") {
		t.Errorf("supplier without consumer_org: %v, want PERMISSION_DENIED by the policy", err)
	}
	// With consumer_org, within its rule: a delegated token.
	tok, err = e.mtls.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim", ConsumerOrg: mptest.ConsumerOrg})
	if err != nil {
		t.Fatalf("supplier for %s: %v", mptest.ConsumerOrg, err)
	}
	claims = accessTokenClaims(t, tok.AccessToken)
	if consumerOf(claims) != "0192:"+mptest.ConsumerOrg || claims["supplier"] == nil {
		t.Errorf("token claims %v: want a token delegated by %s", claims, mptest.ConsumerOrg)
	}
}

// accessTokenClaims decodes the simulator's access token (a JWT) without
// verifying it: the test only reads what it was issued for.
func accessTokenClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func consumerOf(claims map[string]any) string {
	c, _ := claims["consumer"].(map[string]any)
	id, _ := c["ID"].(string)
	return id
}
