package selfservice

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// JWK is a registered key as the API reads and writes it: an RSA public
// key for RS256 signatures, optionally pinned to its enterprise
// certificate (X5C, standard base64 DER, leaf first).
type JWK struct {
	Kty string   `json:"kty"`
	Kid string   `json:"kid"`
	Use string   `json:"use,omitempty"`
	Alg string   `json:"alg,omitempty"`
	N   string   `json:"n"`
	E   string   `json:"e"`
	X5C []string `json:"x5c,omitempty"`
	// Exp is when Maskinporten stops accepting the key, in Unix seconds,
	// as the API tells it; 0 when it does not. Never sent: Maskinporten
	// sets it.
	Exp int64 `json:"exp,omitempty"`
}

// Expires is Exp as a time; zero when the API gave none.
func (k JWK) Expires() time.Time {
	if k.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(k.Exp, 0)
}

// PublicKey is the RSA key k holds.
func (k JWK) PublicKey() (*rsa.PublicKey, error) {
	if k.Kty != "RSA" {
		return nil, fmt.Errorf("key %q: kty %q, not RSA", k.Kid, k.Kty)
	}
	n, err1 := base64.RawURLEncoding.DecodeString(k.N)
	e, err2 := base64.RawURLEncoding.DecodeString(k.E)
	if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("key %q: n and e are not unpadded base64url integers", k.Kid)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	switch {
	case pub.N.BitLen() < 2048:
		return nil, fmt.Errorf("key %q has %d bits; a registered key is RSA of at least 2048", k.Kid, pub.N.BitLen())
	case pub.E < 3 || pub.E%2 == 0:
		return nil, fmt.Errorf("key %q: e %d is not an RSA public exponent", k.Kid, pub.E)
	}
	return pub, nil
}

// NewJWK is pub's registered-key form, its kid its Thumbprint (unique as
// Maskinporten needs, and the same whoever computes it), pinned to chain
// when chain is given (its first certificate must be pub's).
func NewJWK(pub *rsa.PublicKey, chain []*x509.Certificate) (JWK, error) {
	if pub == nil || pub.N == nil || pub.N.BitLen() < 2048 {
		return JWK{}, errors.New("a registered key must be RSA of at least 2048 bits")
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return JWK{}, err
	}
	n, e := rsaMembers(pub)
	k := JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: "RS256", N: n, E: e}
	if len(chain) > 0 {
		if leaf, ok := chain[0].PublicKey.(*rsa.PublicKey); !ok || !leaf.Equal(pub) {
			return JWK{}, fmt.Errorf("the certificate %q is not of key %s", chain[0].Subject, kid)
		}
		for _, c := range chain {
			k.X5C = append(k.X5C, base64.StdEncoding.EncodeToString(c.Raw))
		}
	}
	return k, nil
}

// Thumbprint is pub's RFC 7638 JWK thumbprint (SHA-256, base64url): the
// hash of its required members in lexicographic order, no white space.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	var members map[string]string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		n, e := rsaMembers(k)
		members = map[string]string{"e": e, "kty": "RSA", "n": n}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil || k.Curve.Params().Name != "P-256" {
			return "", fmt.Errorf("an EC key's thumbprint here is for P-256 keys")
		}
		enc := base64.RawURLEncoding
		members = map[string]string{"crv": "P-256", "kty": "EC", "x": enc.EncodeToString(raw[1:33]), "y": enc.EncodeToString(raw[33:])}
	default:
		return "", fmt.Errorf("no thumbprint for a %T", pub)
	}
	canonical, err := json.Marshal(members) // sorted keys, no white space
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

func rsaMembers(pub *rsa.PublicKey) (n, e string) {
	enc := base64.RawURLEncoding
	return enc.EncodeToString(pub.N.Bytes()), enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// Certificates are the key's x5c, parsed; none when it is not pinned.
func (k JWK) Certificates() ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, 0, len(k.X5C))
	for i, s := range k.X5C {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("key %q: x5c[%d] is not standard base64", k.Kid, i)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("key %q: x5c[%d]: %v", k.Kid, i, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}
