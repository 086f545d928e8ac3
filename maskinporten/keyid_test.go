package maskinporten

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// noCertSigner is a registered key without any certificate.
type noCertSigner struct{ softSigner }

func (noCertSigner) Chain() []*x509.Certificate { return nil }

// grantHeader verifies the grant with the signer's public key and returns
// its header.
func grantHeader(t *testing.T, s KeySigner, assertion string) map[string]any {
	t.Helper()
	if _, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()).Parse(assertion,
		func(*jwt.Token) (any, error) { return s.Public(), nil }); err != nil {
		t.Fatalf("grant signature does not verify with the key: %v", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(assertion, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header map[string]any
	if err := json.Unmarshal(raw, &header); err != nil {
		t.Fatal(err)
	}
	return header
}

// TestGrantWithRegisteredKeyOnly: a key without a certificate signs grants
// with kid and no x5c.
func TestGrantWithRegisteredKeyOnly(t *testing.T) {
	s := noCertSigner{newSoftSigner(t)}
	if _, err := NewGrantBuilder(s, GrantOptions{}); err == nil || !strings.Contains(err.Error(), "x5c needs the enterprise certificate") {
		t.Fatalf("x5c grant builder for a key without a certificate: %v, want refused", err)
	}
	b, err := NewGrantBuilder(s, GrantOptions{KeyID: "portvakt-2026"})
	if err != nil {
		t.Fatal(err)
	}
	if b.KeyID() != "portvakt-2026" {
		t.Errorf("KeyID() = %q", b.KeyID())
	}
	g, err := b.Build(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	header := grantHeader(t, s, g.Assertion.Reveal())
	if keys := sortedKeys(header); !slices.Equal(keys, []string{"alg", "kid", "typ"}) || header["kid"] != "portvakt-2026" {
		t.Errorf("header = %v, want kid and no x5c", header)
	}
}

// TestGrantKidWithX5C: with KeyIDWithX5C the grant carries kid and the
// certificate chain together, which pins the registered key to the
// enterprise certificate; without a certificate it cannot be built.
func TestGrantKidWithX5C(t *testing.T) {
	s := newSoftSigner(t)
	b, err := NewGrantBuilder(s, GrantOptions{KeyID: "portvakt-2026", KeyIDWithX5C: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := b.Build(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	header := grantHeader(t, s, g.Assertion.Reveal())
	if keys := sortedKeys(header); !slices.Equal(keys, []string{"alg", "kid", "typ", "x5c"}) || header["kid"] != "portvakt-2026" {
		t.Fatalf("header = %v, want kid and x5c", header)
	}
	x5c := header["x5c"].([]any)
	if len(x5c) != len(s.chain) {
		t.Fatalf("x5c has %d certificates, want %d", len(x5c), len(s.chain))
	}
	for i, c := range x5c {
		if der, err := base64.StdEncoding.DecodeString(c.(string)); err != nil || string(der) != string(s.chain[i].Raw) {
			t.Errorf("x5c[%d] is not chain[%d]: %v", i, i, err)
		}
	}

	if _, err := NewGrantBuilder(noCertSigner{s}, GrantOptions{KeyID: "portvakt-2026", KeyIDWithX5C: true}); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Errorf("kid with x5c for a key without a certificate: %v, want refused", err)
	}
	if _, err := NewGrantBuilder(s, GrantOptions{KeyIDWithX5C: true}); err == nil || !strings.Contains(err.Error(), "needs a kid") {
		t.Errorf("x5c beside kid without a kid: %v, want refused", err)
	}
}

// TestPresets: the environments Portvakt knows by name
// (docs/maskinporten.md, "Environments"), and ver2 kept with a warning.
func TestPresets(t *testing.T) {
	tests := []struct {
		name, issuer, endpoint, resource string
		retired                          bool
	}{
		{"prod", "https://maskinporten.no/", "https://maskinporten.no/token", "https://www.vegvesen.no", false},
		{"test", "https://test.maskinporten.no/", "https://test.maskinporten.no/token", "https://www.utv.vegvesen.no", false},
		{"ver2", "https://ver2.maskinporten.no/", "https://ver2.maskinporten.no/token", "https://www.utv.vegvesen.no", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := Preset(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if env.Name != tt.name || env.Issuer != tt.issuer || env.TokenEndpoint != tt.endpoint || env.Resource != tt.resource {
				t.Errorf("preset %s = %+v", tt.name, env)
			}
			if err := env.Validate(); err != nil {
				t.Error(err)
			}
			if env.MetadataURL() != tt.issuer+".well-known/oauth-authorization-server" {
				t.Errorf("metadata URL %s", env.MetadataURL())
			}
			w := PresetWarning(tt.name)
			switch {
			case tt.retired && (!strings.Contains(w, "retired on 10 June 2024") || !strings.Contains(w, "use preset test")):
				t.Errorf("PresetWarning(%s) = %q, want it to say when it was retired and to use test", tt.name, w)
			case !tt.retired && w != "":
				t.Errorf("PresetWarning(%s) = %q, want none", tt.name, w)
			}
		})
	}
	if len(Presets) != len(tests) {
		t.Errorf("%d presets, %d tested", len(Presets), len(tests))
	}
	if _, err := Preset("ver1"); err == nil || !strings.Contains(err.Error(), "choose one of prod, test, ver2") {
		t.Errorf("unknown preset: %v", err)
	}
}
