package maskinporten

import (
	"crypto"
	"crypto/rand"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// hsmMethod signs JWS with a crypto.Signer: golang-jwt's own RSA methods
// want an *rsa.PrivateKey, which an HSM never hands out.
type hsmMethod struct {
	alg  string
	hash crypto.Hash
}

// Algorithms are the JWS algorithms Maskinporten accepts for grants, all
// RSA PKCS#1 v1.5.
var algorithms = map[string]hsmMethod{
	"RS256": {"RS256", crypto.SHA256},
	"RS384": {"RS384", crypto.SHA384},
	"RS512": {"RS512", crypto.SHA512},
}

func (m hsmMethod) Alg() string { return m.alg }

func (m hsmMethod) Sign(signingString string, key any) ([]byte, error) {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("grant signing key is a %T, not a crypto.Signer", key)
	}
	h := m.hash.New()
	h.Write([]byte(signingString))
	return signer.Sign(rand.Reader, h.Sum(nil), m.hash)
}

func (m hsmMethod) Verify(signingString string, sig []byte, key any) error {
	return jwt.GetSigningMethod(m.alg).Verify(signingString, sig, key)
}
