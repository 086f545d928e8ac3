package signer

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
)

// CheckSigns makes one signature in the HSM and verifies it with the key's
// public half. For a key with a certificate, the certificate's match with
// the key says enough; for one without (a key registered at Digdir by kid),
// this is what shows at start that the key found is one the token can sign
// with, and that the public half registered for it fits.
func (s *Signer) CheckSigns() error {
	digest := sha256.Sum256([]byte("portvakt start-up check of key " + s.key.String()))
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("test signature with key %s: %w", s.key.String(), err)
	}
	if err := rsa.VerifyPKCS1v15(s.public, crypto.SHA256, digest[:], sig); err != nil {
		return fmt.Errorf("the test signature of key %s does not verify with its public key: %w", s.key.String(), err)
	}
	return nil
}
