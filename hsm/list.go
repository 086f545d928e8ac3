package hsm

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/orgno"
)

// Inventory is what a token holds.
type Inventory struct {
	Keys         []p11.KeyObject
	Certificates []CertificateInfo
}

// CertificateInfo describes a certificate object for people.
type CertificateInfo struct {
	ID      []byte
	Label   string
	Subject string
	// OrgNumber is the organisation number in the subject, empty if none.
	OrgNumber string
	NotAfter  time.Time
	// SHA256 is the hex SHA-256 fingerprint of the DER certificate.
	SHA256 string
	// ForKey is the label of the private key on the token whose public half
	// the certificate holds, empty for CA certificates.
	ForKey      string
	Certificate *x509.Certificate
}

// List reads the token's private keys and certificates.
func List(t Token) (Inventory, error) {
	var inv Inventory
	err := t.withToken(func(_ *crypto11.Context, raw *rawSession) error {
		keys, err := raw.PrivateKeys(raw.handle)
		if err != nil {
			return err
		}
		certs, err := raw.Certificates(raw.handle)
		if err != nil {
			return err
		}
		inv.Keys = keys
		for _, c := range certs {
			inv.Certificates = append(inv.Certificates, describeCertificate(c, keys))
		}
		return nil
	})
	return inv, err
}

func describeCertificate(c p11.CertificateObject, keys []p11.KeyObject) CertificateInfo {
	sum := sha256.Sum256(c.Certificate.Raw)
	info := CertificateInfo{
		ID:          c.ID,
		Label:       c.Label,
		Subject:     eseal.Describe(c.Certificate.Subject),
		NotAfter:    c.Certificate.NotAfter,
		SHA256:      hex.EncodeToString(sum[:]),
		Certificate: c.Certificate,
	}
	if n, err := orgno.FromCertificate(c.Certificate); err == nil {
		info.OrgNumber = n.String()
	}
	for _, k := range keys {
		if matchKey(c.Certificate, k.Public) == nil {
			info.ForKey = k.Label
			break
		}
	}
	return info
}
