package signer

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"log/slog"
	"sync"
	"testing"

	"github.com/portvakt/portvakt/internal/logbuffer"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

var (
	caOnce sync.Once
	testCA *devca.CA
)

// sharedCA is made once per test binary: its keys are not under test.
func sharedCA(t testing.TB) *devca.CA {
	t.Helper()
	caOnce.Do(func() {
		var err error
		if testCA, err = devca.New("Portvakt Signer Test"); err != nil {
			t.Fatal(err)
		}
	})
	return testCA
}

// fixture is a token with a certified key, and the log the signer writes.
type fixture struct {
	tok   softhsmtest.Token
	chain []*x509.Certificate
	logs  *logbuffer.Buffer
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	tok := softhsmtest.NewToken(t)
	chain := tok.NewCertifiedKey(t, "eseal", sharedCA(t))
	return fixture{tok: tok, chain: chain, logs: &logbuffer.Buffer{}}
}

func (f fixture) config() Config {
	return Config{
		Token: TokenConfig{
			Module:     f.tok.Module,
			TokenLabel: f.tok.Label,
			PIN:        f.tok.PIN,
			Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
		Key: KeyConfig{KeyLabel: "eseal"},
	}
}

func (f fixture) open(t testing.TB) *Signer {
	t.Helper()
	s, err := Open(f.config())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// verify checks sig over digest with the certificate's public key.
func verify(t testing.TB, cert *x509.Certificate, hash crypto.Hash, digest, sig []byte) {
	t.Helper()
	if err := rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), hash, digest, sig); err != nil {
		t.Fatalf("signature does not verify with the certificate: %v", err)
	}
}

func digestOf(hash crypto.Hash, data []byte) []byte {
	h := hash.New()
	h.Write(data)
	return h.Sum(nil)
}

func verifyQuiet(f fixture, digest, sig []byte) error {
	return rsa.VerifyPKCS1v15(f.chain[0].PublicKey.(*rsa.PublicKey), crypto.SHA256, digest, sig)
}
