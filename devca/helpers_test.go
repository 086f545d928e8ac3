package devca

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"sync"
	"testing"
)

// RSA key generation is slow, especially under -race, so each size is made
// once and shared; tests only read the keys.
var (
	rsa2048 = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	rsa1024 = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 1024) })
)

func testRSAKey(t *testing.T, gen func() (*rsa.PrivateKey, error)) *rsa.PrivateKey {
	t.Helper()
	key, err := gen()
	if err != nil {
		t.Fatalf("generating RSA key: %v", err)
	}
	return key
}

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := New("Portvakt Test")
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return ca
}

// verifyESeal verifies cert the way a relying party would: trusting only the
// root and receiving the issuing CA as an intermediate.
func verifyESeal(t *testing.T, ca *CA, cert *x509.Certificate) {
	t.Helper()
	intermediates := x509.NewCertPool()
	intermediates.AddCert(ca.Issuing)
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         ca.Pool(),
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatalf("Verify() error = %v", err)
	}
	if len(chains) != 1 || len(chains[0]) != 3 {
		t.Fatalf("Verify() chains = %v, want one chain of leaf, issuing, root", chains)
	}
}
