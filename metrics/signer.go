package metrics

import (
	"crypto"
	"crypto/x509"
	"io"
	"time"
)

// KeySigner is a signer that knows its certificate chain, as the grant
// builder needs.
type KeySigner interface {
	crypto.Signer
	Chain() []*x509.Certificate
}

// InstrumentSigner times every HSM signature and counts the failures.
func (m *Metrics) InstrumentSigner(s KeySigner) KeySigner {
	return instrumentedSigner{KeySigner: s, m: m}
}

type instrumentedSigner struct {
	KeySigner
	m *Metrics
}

func (s instrumentedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := s.KeySigner.Sign(r, digest, opts)
	s.m.HSMSignSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.HSMErrors.Inc()
	}
	return sig, err
}
