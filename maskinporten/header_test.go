package maskinporten

import (
	"encoding/base64"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestGrantEncodingIsGolangJWTs: the grant encoded with the header made
// once is, byte for byte, the JWS golang-jwt makes of the same claims and
// header (PKCS#1 v1.5 signatures are deterministic), for each kind of
// header.
func TestGrantEncodingIsGolangJWTs(t *testing.T) {
	s := newSoftSigner(t)
	for _, tc := range []struct {
		name string
		opts GrantOptions
	}{
		{"x5c", GrantOptions{}},
		{"kid", GrantOptions{KeyID: "portvakt-2026"}},
		{"kid and x5c", GrantOptions{KeyID: "portvakt-2026", KeyIDWithX5C: true, Alg: "RS512"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewGrantBuilder(s, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			claims := grantClaims{Audience: "https://test.maskinporten.no/", Issuer: "client", Scope: "svv:kjoretoy/ecoc", IssuedAt: 1767225600, ExpiresAt: 1767225660, ID: "jti-1", ConsumerOrg: "974760673"}
			got, err := b.sign(claims)
			if err != nil {
				t.Fatal(err)
			}
			token := jwt.NewWithClaims(b.method, claims)
			if tc.opts.KeyID != "" {
				token.Header["kid"] = tc.opts.KeyID
			}
			if tc.opts.KeyID == "" || tc.opts.KeyIDWithX5C {
				var x5c []string
				for _, c := range s.chain {
					x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
				}
				token.Header["x5c"] = x5c
			}
			want, err := token.SignedString(s)
			if err != nil {
				t.Fatal(err)
			}
			if got.Reveal() != want {
				t.Fatalf("grant\n%s\nwant golang-jwt's\n%s", got.Reveal(), want)
			}
		})
	}
}
