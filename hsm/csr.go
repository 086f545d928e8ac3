package hsm

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"github.com/ThalesGroup/crypto11"
)

// CreateCSR makes a PKCS#10 certificate request for the selected key,
// signed inside the token with SHA-256, with the given subject. The CA
// (Buypass, Commfides) checks the subject against its order.
func CreateCSR(t Token, sel KeySelector, subject pkix.Name) ([]byte, error) {
	var der []byte
	err := t.withToken(func(ctx *crypto11.Context, raw *rawSession) error {
		key, err := findKey(raw, sel)
		if err != nil {
			return err
		}
		signer, err := ctx.FindKeyPair(key.ID, []byte(key.Label))
		if err != nil || signer == nil {
			return fmt.Errorf("opening key %s for signing: %v", sel, err)
		}
		der, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:            subject,
			SignatureAlgorithm: x509.SHA256WithRSA,
		}, signer)
		if err != nil {
			return fmt.Errorf("signing the certificate request with key %s: %w", sel, err)
		}
		return nil
	})
	return der, err
}
