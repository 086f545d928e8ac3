package mpsim

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestMetadata(t *testing.T) {
	s := startSim(t, nil)
	resp, err := http.Get(s.url + ".well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m Metadata
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Trace-Id") == "" {
		t.Errorf("status %d, X-Trace-Id %q", resp.StatusCode, resp.Header.Get("X-Trace-Id"))
	}
	if m.Issuer != s.url || m.TokenEndpoint != s.url+"token" || m.JWKSURI != s.url+"jwk" ||
		!slices.Equal(m.TokenEndpointAuthMethodsSupported, []string{"private_key_jwt"}) ||
		!slices.Equal(m.GrantTypesSupported, []string{GrantType}) ||
		!slices.Equal(m.TokenEndpointAuthSigningAlgs, []string{"RS256", "RS384", "RS512"}) {
		t.Errorf("metadata %+v", m)
	}
}

func TestMetadataMethods(t *testing.T) {
	s := startSim(t, nil)
	for _, path := range []string{".well-known/oauth-authorization-server", "jwk"} {
		resp, err := http.Post(s.url+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %d, Allow %q; want 405 with Allow: GET, HEAD", path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

// TestBaseURL serves an issuer that is not the simulator's address, as a
// client configured for Maskinporten's test environment would see it.
func TestBaseURL(t *testing.T) {
	const issuer = "https://test.maskinporten.no/"
	s := startSim(t, func(c *Config) { c.BaseURL, c.Issuer = c.Issuer, issuer })
	resp, err := http.Get(s.url + ".well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m Metadata
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.Issuer != issuer || m.TokenEndpoint != s.url+"token" || m.JWKSURI != s.url+"jwk" {
		t.Errorf("metadata %+v: want issuer %s and endpoints at %s", m, issuer, s.url)
	}
	r := s.post(t, grantSpec{now: time.Now(), issuer: issuer}.build(t))
	if r.status != http.StatusOK {
		t.Fatalf("grant with aud %s: %d %s %s", issuer, r.status, r.mp, r.message)
	}
	if claims := s.verifyAccessToken(t, r.token.AccessToken); claims["iss"] != issuer {
		t.Errorf("access token iss %v, want %s", claims["iss"], issuer)
	}
}
