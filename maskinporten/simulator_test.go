package maskinporten

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/internal/mptest"
)

// These tests send grants made by the real GrantBuilder, signed in a
// SoftHSM2 token, over real HTTP to the Maskinporten simulator.

// world adds the grant builder to mptest's world.
type world struct{ *mptest.World }

func newWorld(t testing.TB) world { return world{mptest.New(t, mptest.Options{})} }

func (w world) builder(t testing.TB, opts GrantOptions) *GrantBuilder {
	t.Helper()
	b, err := NewGrantBuilder(w.Signer, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w world) request(scopes ...string) GrantRequest {
	return GrantRequest{Issuer: w.Issuer, ClientID: mptest.ClientID, Scopes: scopes}
}

// token makes one attempt, as the token cache does for each of its own:
// it builds a grant (a new jti, one signature in the HSM) and posts it
// once. It checks that one request reached the simulator and that the
// Attempt reported for metrics agrees with the result.
func (w world) token(t testing.TB, c *Client, b *GrantBuilder, req GrantRequest) (Token, error) {
	t.Helper()
	g, err := b.Build(req)
	if err != nil {
		t.Fatalf("building the grant: %v", err)
	}
	before := w.Sim.Stats().TokenRequests
	tok, attempt, err := c.Post(t.Context(), w.Endpoint, g)
	checkAttempt(t, attempt, err)
	if n := w.Sim.Stats().TokenRequests - before; n != 1 {
		t.Fatalf("the simulator saw %d requests for one Post, want 1", n)
	}
	if err == nil && tok.GrantJTI != g.JTI {
		t.Fatalf("token from grant %s, want the posted grant %s", tok.GrantJTI, g.JTI)
	}
	return tok, err
}

// checkAttempt: the Attempt given for metrics is the attempt's outcome.
func checkAttempt(t testing.TB, a Attempt, err error) {
	t.Helper()
	if a.Err != err {
		t.Fatalf("Attempt.Err = %v, want the returned error %v", a.Err, err)
	}
	if a.Duration() <= 0 {
		t.Fatalf("Attempt.Duration = %v, want the time the attempt took", a.Duration())
	}
	var mpErr *Error
	switch {
	case errors.As(err, &mpErr):
		if a.Status != mpErr.Status || a.MPCode != mpErr.MPCode {
			t.Fatalf("Attempt status %d %q, want the refusal's %d %q", a.Status, a.MPCode, mpErr.Status, mpErr.MPCode)
		}
	case err == nil && a.Status != http.StatusOK:
		t.Fatalf("Attempt.Status = %d for a token, want 200", a.Status)
	}
}

// accessClaims decodes the simulator's access token (the test trusts it;
// clients treat it as opaque).
func accessClaims(t *testing.T, tok Token) map[string]any {
	t.Helper()
	parts := strings.Split(tok.AccessToken.Reveal(), ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := decodeJSON(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestTokensFromTheSimulator(t *testing.T) {
	w := newWorld(t)
	c := NewClient(ClientOptions{})
	b := w.builder(t, GrantOptions{})

	t.Run("consumer", func(t *testing.T) {
		tok, err := w.token(t, c, b, w.request(mptest.ScopeOwn))
		if err != nil {
			t.Fatal(err)
		}
		claims := accessClaims(t, tok)
		if claims["client_id"] != mptest.ClientID || claims["scope"] != mptest.ScopeOwn || claims["client_amr"] != "virksomhetssertifikat" {
			t.Errorf("access token claims = %v", claims)
		}
		if consumer := claims["consumer"].(map[string]any); consumer["ID"] != "0192:"+mptest.OwnOrg {
			t.Errorf("consumer = %v, want our own organisation", consumer)
		}
		if tok.ExpiresIn != 120*time.Second || !tok.ExpiresAt.Equal(tok.IssuedAt.Add(tok.ExpiresIn)) {
			t.Errorf("expiry: in %v, at %v from %v", tok.ExpiresIn, tok.ExpiresAt, tok.IssuedAt)
		}
	})
	t.Run("delegated", func(t *testing.T) {
		req := w.request(mptest.ScopeDelegated)
		req.ConsumerOrg = mptest.ConsumerOrg
		req.Resource = "https://www.utv.vegvesen.no"
		tok, err := w.token(t, c, b, req)
		if err != nil {
			t.Fatal(err)
		}
		claims := accessClaims(t, tok)
		consumer, _ := claims["consumer"].(map[string]any)
		supplier, _ := claims["supplier"].(map[string]any)
		if consumer["ID"] != "0192:"+mptest.ConsumerOrg || supplier["ID"] != "0192:"+mptest.OwnOrg || claims["aud"] != req.Resource {
			t.Errorf("delegated token claims = %v", claims)
		}
	})
	t.Run("validity counts from the client's clock", func(t *testing.T) {
		at := time.Now().Add(-time.Hour).Truncate(time.Second)
		tok, err := w.token(t, NewClient(ClientOptions{Now: func() time.Time { return at }}), b, w.request(mptest.ScopeOwn))
		if err != nil {
			t.Fatal(err)
		}
		if !tok.IssuedAt.Equal(at) || !tok.ExpiresAt.Equal(at.Add(tok.ExpiresIn)) {
			t.Fatalf("issued %v, expires %v; want from ClientOptions.Now %v", tok.IssuedAt, tok.ExpiresAt, at)
		}
	})
}

// TestSimulatorRefusals drives every refusal the issue names with grants
// signed in the HSM, and checks Maskinporten's status, error and MP code
// reach the caller in a typed *Error, after exactly one request.
func TestSimulatorRefusals(t *testing.T) {
	w := newWorld(t)
	c := NewClient(ClientOptions{})
	now := time.Now()

	// A second key on the token, certified for another organisation.
	foreignSigner := w.CertifiedKeyFor(t, "foreign", "974760673")

	// attempt is what a case sends: a builder and request for the client
	// (Build, then one Post), or a raw assertion the builder would refuse
	// to make, posted as the client does.
	type attempt struct {
		builder   *GrantBuilder
		request   GrantRequest
		assertion string
	}
	tests := []struct {
		name   string
		status int
		code   string
		mp     string
		grant  func(t *testing.T) attempt
	}{
		{"wrong aud", 400, "invalid_grant", "MP-110", func(t *testing.T) attempt {
			req := w.request(mptest.ScopeOwn)
			req.Issuer = "https://maskinporten.no/"
			return attempt{builder: w.builder(t, GrantOptions{}), request: req}
		}},
		{"clock skew", 400, "invalid_grant", "MP-130", func(t *testing.T) attempt {
			b := w.builder(t, GrantOptions{Now: func() time.Time { return now.Add(-30 * time.Second) }})
			return attempt{builder: b, request: w.request(mptest.ScopeOwn)}
		}},
		{"too long a lifetime", 400, "invalid_grant", "MP-130", func(t *testing.T) attempt {
			return attempt{assertion: signClaims(t, w.builder(t, GrantOptions{}), grantClaims{
				Audience: w.Issuer, Issuer: mptest.ClientID, Scope: mptest.ScopeOwn, IssuedAt: now.Unix(), ExpiresAt: now.Unix() + 121, ID: newJTI(t),
			})}
		}},
		{"unknown claim", 400, "invalid_request", "MP-011", func(t *testing.T) attempt {
			return attempt{assertion: signClaims(t, w.builder(t, GrantOptions{}), extraClaim{grantClaims{
				Audience: w.Issuer, Issuer: mptest.ClientID, Scope: mptest.ScopeOwn, IssuedAt: now.Unix(), ExpiresAt: now.Unix() + 60, ID: newJTI(t),
			}, "portvakt"})}
		}},
		{"wrong organisation", 400, "invalid_grant", "MP-122", func(t *testing.T) attempt {
			b, err := NewGrantBuilder(foreignSigner, GrantOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return attempt{builder: b, request: w.request(mptest.ScopeOwn)}
		}},
		{"unregistered scope", 400, "invalid_scope", "MP-200", func(t *testing.T) attempt {
			return attempt{builder: w.builder(t, GrantOptions{}), request: w.request(mptest.ScopeNotGranted)}
		}},
		{"delegated to another supplier only", 403, "forbidden", "MP-251", func(t *testing.T) attempt {
			req := w.request(mptest.ScopeElsewhere)
			req.ConsumerOrg = mptest.ConsumerOrg
			return attempt{builder: w.builder(t, GrantOptions{}), request: req}
		}},
		{"no delegation at all", 403, "forbidden", "MP-251", func(t *testing.T) attempt {
			req := w.request(mptest.ScopeDelegated)
			req.ConsumerOrg = mptest.StrangerOrg
			return attempt{builder: w.builder(t, GrantOptions{}), request: req}
		}},
		{"bad signature", 400, "invalid_grant", "MP-124", func(t *testing.T) attempt {
			g, err := w.builder(t, GrantOptions{}).Build(w.request(mptest.ScopeOwn))
			if err != nil {
				t.Fatal(err)
			}
			return attempt{assertion: tamperSignature(g.Assertion.Reveal())}
		}},
		{"broken chain", 400, "invalid_grant", "MP-123", func(t *testing.T) attempt {
			b := w.builder(t, GrantOptions{})
			other, err := devca.New("Unrelated")
			if err != nil {
				t.Fatal(err)
			}
			// The leaf, then a CA that did not issue it.
			x5c := []string{base64.StdEncoding.EncodeToString(w.Chain[0].Raw), base64.StdEncoding.EncodeToString(other.Issuing.Raw)}
			if b.header, err = encodeHeader(b.method.Alg(), "", x5c); err != nil {
				t.Fatal(err)
			}
			return attempt{builder: b, request: w.request(mptest.ScopeOwn)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.grant(t)
			before := w.Sim.Stats().TokenRequests
			var err error
			if a.assertion != "" {
				err = postRaw(t, w.Endpoint, a.assertion)
			} else {
				_, err = w.token(t, c, a.builder, a.request)
			}
			mpErr, ok := err.(*Error)
			if !ok {
				t.Fatalf("error = %v (%T), want *Error", err, err)
			}
			if mpErr.Status != tt.status || mpErr.Code != tt.code || mpErr.MPCode != tt.mp || mpErr.TraceID == "" {
				t.Fatalf("got HTTP %d %s %s trace %q (%s), want HTTP %d %s %s with a trace id",
					mpErr.Status, mpErr.Code, mpErr.MPCode, mpErr.TraceID, mpErr.Description, tt.status, tt.code, tt.mp)
			}
			if IsTemporary(err) || RetryAfter(err) != 0 {
				t.Fatalf("IsTemporary = %v, RetryAfter = %v for a 4xx refusal: the cache would try again a request that will be refused again", IsTemporary(err), RetryAfter(err))
			}
			if n := w.Sim.Stats().TokenRequests - before; n != 1 {
				t.Fatalf("%d requests for one attempt, want 1", n)
			}
		})
	}

	t.Run("reused jti", func(t *testing.T) {
		g, err := w.builder(t, GrantOptions{}).Build(w.request(mptest.ScopeOwn))
		if err != nil {
			t.Fatal(err)
		}
		if err := postRaw(t, w.Endpoint, g.Assertion.Reveal()); err != nil {
			t.Fatalf("first use: %v", err)
		}
		err = postRaw(t, w.Endpoint, g.Assertion.Reveal())
		if mpErr, ok := err.(*Error); !ok || mpErr.MPCode != "MP-012" || mpErr.Code != "invalid_grant" {
			t.Fatalf("second use: %v, want invalid_grant MP-012", err)
		}
	})
}

// extraClaim adds a claim Maskinporten does not document.
type extraClaim struct {
	grantClaims
	Subject string `json:"sub"`
}

// signClaims signs arbitrary claims with the builder's header and key:
// grants the builder itself would refuse to make.
func signClaims(t *testing.T, b *GrantBuilder, claims jwt.Claims) string {
	t.Helper()
	v, err := b.sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return v.Reveal()
}

func newJTI(t *testing.T) string {
	t.Helper()
	return uuid.NewString()
}

func tamperSignature(assertion string) string {
	parts := strings.Split(assertion, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 0xff
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	return strings.Join(parts, ".")
}

// postRaw posts an assertion once, as the client does, and returns the
// refusal as an *Error (nil on 200).
func postRaw(t *testing.T, endpoint, assertion string) error {
	t.Helper()
	form := url.Values{"grant_type": {grantType}, "assertion": {assertion}}
	resp, err := http.PostForm(endpoint, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if _, err := ParseTokenResponse(body); err != nil {
			t.Fatal(err)
		}
		return nil
	}
	return ParseError(resp.StatusCode, resp.Header, body)
}
