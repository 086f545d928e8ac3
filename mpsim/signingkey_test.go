package mpsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"
)

// TestES256SigningKey: with a P-256 SigningKey the simulator signs its
// access tokens with ES256 and publishes the EC key at /jwk, under its
// RFC 7638 thumbprint; the tokens verify with it.
func TestES256SigningKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := startSim(t, func(c *Config) { c.SigningKey = key })
	now := time.Now()
	r := s.post(t, grantSpec{now: now, issuer: s.url}.build(t))
	if r.status != 200 {
		t.Fatalf("token request: %d %s %s", r.status, r.mp, r.message)
	}
	claims := s.verifyAccessToken(t, r.token.AccessToken) // ES256, with the key /jwk publishes
	if claims["client_id"] == nil {
		t.Errorf("claims %v have no client_id", claims)
	}
	// RFC 7638 section 3.1's members for an EC key, so the kid is the
	// thumbprint every JOSE library computes.
	if kid, want := thumbprint(key.Public()), s.kid; kid != want || len(kid) != 43 {
		t.Errorf("kid %q, want the 43-character thumbprint %q", want, kid)
	}
}

// TestSigningKeyRefused: a key the simulator cannot sign tokens with as
// Maskinporten's clients expect is refused at New, saying what to give.
func TestSigningKeyRefused(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	f := getFixture(t)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		want string
	}{
		{"P-384", p384, "ES256 needs P-256"},
		{"RSA-1024", small, "RSA of 1024 bits; give at least 2048"},
		{"a nil RSA key", (*rsa.PrivateKey)(nil), "leave SigningKey nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config("http://127.0.0.1:1/")
			cfg.SigningKey = tc.key
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
