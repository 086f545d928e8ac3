package maskinporten

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"sync"
	"testing"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/eseal"
)

// softSigner is an in-memory key with a development eSeal, for the unit
// tests of grant encoding; the HSM-backed signer is used in the tests
// against the simulator.
type softSigner struct {
	*rsa.PrivateKey
	chain []*x509.Certificate
}

func (s softSigner) Chain() []*x509.Certificate { return s.chain }

var (
	softOnce sync.Once
	soft     softSigner
)

func newSoftSigner(t testing.TB) softSigner {
	t.Helper()
	softOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := devca.New("Grant Unit Test")
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.IssueESeal(&key.PublicKey, eseal.Subject{OrgNumber: "991825827", Organization: "Unit AS"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		soft = softSigner{PrivateKey: key, chain: append([]*x509.Certificate{cert}, ca.Chain()...)}
	})
	return soft
}
