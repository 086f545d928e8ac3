package hsm

import (
	"crypto/sha1" //nolint:gosec // CKA_ID convention (RFC 5280 §4.2.1.2 method 1), not security
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// transaction creates token objects and destroys them all again unless
// committed, so that a failed import leaves the token as it was.
type transaction struct {
	raw     *rawSession
	created []pkcs11.ObjectHandle
	done    bool
}

func (tx *transaction) create(what string, template []*pkcs11.Attribute) error {
	h, err := tx.raw.CreateObject(tx.raw.handle, template)
	if err != nil {
		return fmt.Errorf("storing %s on the token: %w", what, err)
	}
	tx.created = append(tx.created, h)
	return nil
}

func (tx *transaction) commit() { tx.done = true }

// rollback destroys what was created, newest first. It returns an error
// only if an object could not be removed, which the caller must report: the
// token then needs a hand.
func (tx *transaction) rollback() error {
	if tx.done {
		return nil
	}
	var errs []error
	for i := len(tx.created) - 1; i >= 0; i-- {
		if err := tx.raw.DestroyObject(tx.raw.handle, tx.created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing the %d objects of the failed import (remove them by hand with `pkcs11-tool --delete-object`): %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// certificateTemplate is the PKCS#11 object for cert.
func certificateTemplate(cert *x509.Certificate, id []byte, label string) ([]*pkcs11.Attribute, error) {
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return nil, err
	}
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
		pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
	}, nil
}

// chainCertID is the CKA_ID of a CA certificate: its subject key identifier,
// or the SHA-1 of its public key when it has none.
func chainCertID(cert *x509.Certificate) []byte {
	if len(cert.SubjectKeyId) > 0 {
		return cert.SubjectKeyId
	}
	sum := sha1.Sum(cert.RawSubjectPublicKeyInfo) //nolint:gosec // identifier, not security
	return sum[:]
}

func chainCertLabel(cert *x509.Certificate) string {
	if cert.Subject.CommonName != "" {
		return cert.Subject.CommonName
	}
	return cert.Subject.String()
}
