package hsm

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/internal/p11"
)

// ImportResult says what an import stored and what was already there.
type ImportResult struct {
	Key                         p11.KeyObject
	CertificatesStored, Skipped int
}

// ImportCertificates stores the key's issued certificate and its chain
// beside the key: the certificate under the key's id and label, each CA
// certificate under its own key identifier. chain[0] must be the key's
// certificate and each next one must have issued the one before.
// Certificates already on the token are skipped, so an import can be
// repeated.
func ImportCertificates(t Token, sel KeySelector, chain []*x509.Certificate, now time.Time) (ImportResult, error) {
	if err := checkChain(chain, now); err != nil {
		return ImportResult{}, err
	}
	var result ImportResult
	err := t.withToken(func(_ *crypto11.Context, raw *rawSession) error {
		key, err := findKey(raw, sel)
		if err != nil {
			return err
		}
		result.Key = key
		if err := matchKey(chain[0], key.Public); err != nil {
			return err
		}
		result.CertificatesStored, result.Skipped, err = storeCertificates(raw, key, chain, nil)
		return err
	})
	return result, err
}

// storeCertificates adds the certificates not yet on the token, within tx
// when one is given (the caller commits), else in a transaction of its own.
func storeCertificates(raw *rawSession, key p11.KeyObject, chain []*x509.Certificate, tx *transaction) (stored, skipped int, err error) {
	existing, err := raw.Certificates(raw.handle)
	if err != nil {
		return 0, 0, err
	}
	own := tx == nil
	if own {
		tx = &transaction{raw: raw}
	}
	defer func() {
		if err != nil && own {
			if rbErr := tx.rollback(); rbErr != nil {
				err = fmt.Errorf("%w; %w", err, rbErr)
			}
		}
	}()
	for i, cert := range chain {
		if onToken(existing, cert) {
			skipped++
			continue
		}
		id, label := chainCertID(cert), chainCertLabel(cert)
		if i == 0 {
			id, label = key.ID, key.Label
		}
		template, err := certificateTemplate(cert, id, label)
		if err != nil {
			return 0, 0, err
		}
		if err := tx.create(fmt.Sprintf("certificate %q", cert.Subject), template); err != nil {
			return 0, 0, err
		}
		stored++
	}
	if own {
		tx.commit()
	}
	return stored, skipped, nil
}

func onToken(existing []p11.CertificateObject, cert *x509.Certificate) bool {
	for _, e := range existing {
		if e.Certificate.Equal(cert) {
			return true
		}
	}
	return false
}

// checkChain refuses an empty chain, an expired certificate and a chain out
// of order, saying which certificate is wrong.
func checkChain(chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("no certificate to import")
	}
	// An expired issuer makes the key's certificate unusable too:
	// Maskinporten refuses the whole chain (MP-121).
	for i, c := range chain {
		if now.After(c.NotAfter) {
			return fmt.Errorf("certificate %d (%q) expired on %s; import a valid one", i+1, eseal.Describe(c.Subject), c.NotAfter.Format(time.DateOnly))
		}
	}
	for i := 1; i < len(chain); i++ {
		if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
			return fmt.Errorf("certificate %d (%q) did not issue certificate %d (%q): give the key's certificate first, then its issuers in order: %w",
				i+1, chain[i].Subject, i, chain[i-1].Subject, err)
		}
	}
	return nil
}

func matchKey(cert *x509.Certificate, public *rsa.PublicKey) error {
	certKey, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || public == nil || certKey.E != public.E || certKey.N.Cmp(public.N) != 0 {
		return fmt.Errorf("%w: certificate %q (serial %x) is not for this key", ErrMismatch, cert.Subject, cert.SerialNumber)
	}
	return nil
}
