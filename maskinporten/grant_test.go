package maskinporten

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func testRequest() GrantRequest {
	return GrantRequest{Issuer: "https://test.maskinporten.no/", ClientID: "client-1", Scopes: []string{"svv:kjoretoy/ecoc"}}
}

// decode splits a compact JWS and verifies it with the leaf's key.
func decode(t *testing.T, s softSigner, assertion string, alg string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	for i, v := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithoutClaimsValidation()).Parse(assertion,
		func(*jwt.Token) (any, error) { return s.chain[0].PublicKey, nil }); err != nil {
		t.Fatalf("grant signature does not verify with the certificate: %v", err)
	}
	return header, claims
}

func TestGrantHasExactlyTheDocumentedFields(t *testing.T) {
	s := newSoftSigner(t)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, alg := range []string{"RS256", "RS384", "RS512"} {
		t.Run(alg, func(t *testing.T) {
			b, err := NewGrantBuilder(s, GrantOptions{Alg: alg, Lifetime: 90 * time.Second, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			req := testRequest()
			req.Scopes = []string{"svv:kjoretoy/ecoc.delegert", "svv:kjoretoy/leasingtaker.delegert"}
			req.Resource = "https://www.utv.vegvesen.no"
			req.ConsumerOrg = "974760673"
			g, err := b.Build(req)
			if err != nil {
				t.Fatal(err)
			}
			header, claims := decode(t, s, g.Assertion.Reveal(), alg)
			if keys := sortedKeys(header); !slices.Equal(keys, []string{"alg", "typ", "x5c"}) {
				t.Errorf("header fields = %v, want alg, typ, x5c", keys)
			}
			if header["alg"] != alg || header["typ"] != "JWT" {
				t.Errorf("header = %v", header)
			}
			x5c := header["x5c"].([]any)
			if len(x5c) != len(s.chain) {
				t.Fatalf("x5c has %d certificates, want %d", len(x5c), len(s.chain))
			}
			for i, c := range x5c {
				der, err := base64.StdEncoding.DecodeString(c.(string)) // standard, not URL, base64
				if err != nil || string(der) != string(s.chain[i].Raw) {
					t.Errorf("x5c[%d] is not the standard-base64 DER of chain[%d]: %v", i, i, err)
				}
			}
			want := []string{"aud", "consumer_org", "exp", "iat", "iss", "jti", "resource", "scope"}
			if keys := sortedKeys(claims); !slices.Equal(keys, want) {
				t.Errorf("claims = %v, want exactly %v", keys, want)
			}
			if claims["aud"] != "https://test.maskinporten.no/" || claims["iss"] != "client-1" ||
				claims["scope"] != "svv:kjoretoy/ecoc.delegert svv:kjoretoy/leasingtaker.delegert" ||
				claims["resource"] != "https://www.utv.vegvesen.no" || claims["consumer_org"] != "974760673" {
				t.Errorf("claims = %v", claims)
			}
			if claims["iat"] != float64(now.Unix()) || claims["exp"] != float64(now.Unix()+90) {
				t.Errorf("iat %v exp %v, want %d and %d", claims["iat"], claims["exp"], now.Unix(), now.Unix()+90)
			}
			if jti := claims["jti"].(string); !uuidV4.MatchString(jti) || jti != g.JTI {
				t.Errorf("jti %q is not the grant's UUIDv4 %q", jti, g.JTI)
			}
		})
	}
}

func TestGrantOmitsOptionalClaims(t *testing.T) {
	s := newSoftSigner(t)
	b, err := NewGrantBuilder(s, GrantOptions{KeyID: "registered-key"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := b.Build(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	header, claims := decode(t, s, g.Assertion.Reveal(), "RS256")
	if keys := sortedKeys(header); !slices.Equal(keys, []string{"alg", "kid", "typ"}) || header["kid"] != "registered-key" {
		t.Errorf("header = %v, want kid instead of x5c", header)
	}
	if keys := sortedKeys(claims); !slices.Equal(keys, []string{"aud", "exp", "iat", "iss", "jti", "scope"}) {
		t.Errorf("claims = %v, want no resource and no consumer_org", keys)
	}
	if claims["exp"].(float64)-claims["iat"].(float64) != DefaultGrantLifetime.Seconds() {
		t.Errorf("lifetime = %v s, want the default %v", claims["exp"].(float64)-claims["iat"].(float64), DefaultGrantLifetime)
	}
}

// TestSystemUserGrant: a system user's grant has the documented claims
// plus authorization_details, byte for byte as Altinn spells it (field
// order, case, ID with the 0192 prefix), externalRef only when given, and
// no consumer_org.
func TestSystemUserGrant(t *testing.T) {
	s := newSoftSigner(t)
	b, err := NewGrantBuilder(s, GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		su   SystemUser
		want string
	}{
		{"without external reference", SystemUser{Org: "313427137"},
			`[{"type":"urn:altinn:systemuser","systemuser_org":{"authority":"iso6523-actorid-upis","ID":"0192:313427137"}}]`},
		{"with external reference", SystemUser{Org: "313427137", ExternalRef: "kjoretoy-prod-1"},
			`[{"type":"urn:altinn:systemuser","systemuser_org":{"authority":"iso6523-actorid-upis","ID":"0192:313427137"},"externalRef":"kjoretoy-prod-1"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := testRequest()
			req.SystemUser = &tt.su
			g, err := b.Build(req)
			if err != nil {
				t.Fatal(err)
			}
			_, claims := decode(t, s, g.Assertion.Reveal(), "RS256")
			if keys := sortedKeys(claims); !slices.Equal(keys, []string{"aud", "authorization_details", "exp", "iat", "iss", "jti", "scope"}) {
				t.Errorf("claims = %v, want the own grant's and authorization_details, nothing else", keys)
			}
			raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(g.Assertion.Reveal(), ".")[1])
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(raw, &fields); err != nil {
				t.Fatal(err)
			}
			if got := string(fields["authorization_details"]); got != tt.want {
				t.Errorf("authorization_details =\n%s\nwant\n%s", got, tt.want)
			}
			if claims["scope"] != "svv:kjoretoy/ecoc" || claims["iss"] != "client-1" {
				t.Errorf("claims = %v", claims)
			}
		})
	}
}

func TestEveryGrantHasAFreshJTI(t *testing.T) {
	b, err := NewGrantBuilder(newSoftSigner(t), GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 50 {
		g, err := b.Build(testRequest())
		if err != nil {
			t.Fatal(err)
		}
		if seen[g.JTI] {
			t.Fatalf("jti %s used twice", g.JTI)
		}
		seen[g.JTI] = true
	}
}

func TestGrantBuilderRefusesWhatMaskinportenWould(t *testing.T) {
	s := newSoftSigner(t)
	for _, opts := range []GrantOptions{{Alg: "PS256"}, {Alg: "none"}, {Lifetime: 121 * time.Second}, {Lifetime: -time.Second}} {
		if _, err := NewGrantBuilder(s, opts); err == nil {
			t.Errorf("NewGrantBuilder(%+v) succeeded", opts)
		}
	}
	b, _ := NewGrantBuilder(s, GrantOptions{})
	tests := []struct {
		name   string
		change func(*GrantRequest)
		want   string
	}{
		{"issuer without slash", func(r *GrantRequest) { r.Issuer = "https://test.maskinporten.no" }, "trailing slash"},
		{"token endpoint as aud", func(r *GrantRequest) { r.Issuer = "https://test.maskinporten.no/token" }, "trailing slash"},
		{"http issuer", func(r *GrantRequest) { r.Issuer = "http://maskinporten.no/" }, "issuer"},
		{"no client", func(r *GrantRequest) { r.ClientID = " " }, "client id is empty"},
		{"no scope", func(r *GrantRequest) { r.Scopes = nil }, "no scope"},
		{"scope without prefix", func(r *GrantRequest) { r.Scopes = []string{"ecoc"} }, "prefix:name"},
		{"scope with space", func(r *GrantRequest) { r.Scopes = []string{"svv:a b"} }, "not allowed"},
		{"bad consumer_org", func(r *GrantRequest) { r.ConsumerOrg = "974760674" }, "consumer_org"},
		{"relative resource", func(r *GrantRequest) { r.Resource = "vegvesen" }, "resource"},
		{"system user with consumer_org", func(r *GrantRequest) {
			r.ConsumerOrg, r.SystemUser = "974760673", &SystemUser{Org: "313427137"}
		}, "consumer_org or a system user, not both"},
		{"system user without org", func(r *GrantRequest) { r.SystemUser = &SystemUser{} }, "system user org"},
		{"system user org with a bad check digit", func(r *GrantRequest) { r.SystemUser = &SystemUser{Org: "313427138"} }, "system user org"},
		{"external reference with a newline", func(r *GrantRequest) {
			r.SystemUser = &SystemUser{Org: "313427137", ExternalRef: "a\nb"}
		}, "system user external reference"},
		{"external reference too long", func(r *GrantRequest) {
			r.SystemUser = &SystemUser{Org: "313427137", ExternalRef: strings.Repeat("r", 129)}
		}, "at most 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := testRequest()
			tt.change(&req)
			_, err := b.Build(req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
