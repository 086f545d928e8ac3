package devca

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/orgno"
)

// minRSABits is the smallest RSA modulus accepted for an eSeal key, matching
// what Buypass and Commfides require of the HSM key.
const minRSABits = 2048

// defaultESealValidity is used when the caller passes no validity.
const defaultESealValidity = 365 * 24 * time.Hour

// IssueESeal issues an end-entity eSeal certificate for pub, signed by the
// issuing CA. pub must be an RSA key of at least 2048 bits, because that is
// what the HSM holds in production and code under test should see the same
// key type. A validity of zero or less means one year.
//
// The certificate carries ExtKeyUsageClientAuth, as real eSeals do, so
// verifiers must pass that (or ExtKeyUsageAny) in
// x509.VerifyOptions.KeyUsages; the default there is server authentication.
func (ca *CA) IssueESeal(pub crypto.PublicKey, subject eseal.Subject, validity time.Duration) (*x509.Certificate, error) {
	if err := subject.Validate(); err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	tmpl := &x509.Certificate{Subject: subject.Name()}
	return ca.issue(tmpl, pub, validity)
}

// IssueFromCSR issues an eSeal for the key and subject in csr, as an issuer
// would after checking the applicant. The CSR must be self-signed correctly
// and its subject must carry a valid organisation number; the subject is
// copied byte for byte, so attributes such as organizationIdentifier survive
// exactly as requested. Other CSR contents (extensions, SANs) are ignored.
func (ca *CA) IssueFromCSR(csr *x509.CertificateRequest, validity time.Duration) (*x509.Certificate, error) {
	if csr == nil {
		return nil, errors.New("devca: CSR is nil")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("devca: CSR signature does not verify; it was not signed by the key it contains, or was altered: %w", err)
	}
	if _, err := orgno.FromName(csr.Subject); err != nil {
		return nil, fmt.Errorf("devca: CSR: %w", err)
	}
	// RawSubject rather than Subject: crypto/x509 encodes Subject from its
	// typed fields and ExtraNames, which would drop organizationIdentifier
	// parsed into Names.
	tmpl := &x509.Certificate{RawSubject: csr.RawSubject}
	return ca.issue(tmpl, csr.PublicKey, validity)
}

// issue completes tmpl as an end-entity eSeal and signs it.
func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	if err := checkESealKey(pub); err != nil {
		return nil, err
	}
	if validity <= 0 {
		validity = defaultESealValidity
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Issuing.NotAfter) {
		return nil, fmt.Errorf("devca: eSeal validity %s would end %s, after the issuing CA expires %s; use a shorter validity or a new CA",
			validity, notAfter.UTC().Format(time.RFC3339), ca.Issuing.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}

	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	tmpl.SubjectKeyId = skid

	cert, err := createCertificate(tmpl, ca.Issuing, pub, ca.issuingKey)
	if err != nil {
		return nil, fmt.Errorf("devca: signing eSeal certificate: %w", err)
	}
	return cert, nil
}

// checkESealKey rejects keys that a real eSeal issuer would refuse.
func checkESealKey(pub crypto.PublicKey) error {
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok || rsaPub == nil || rsaPub.N == nil {
		return fmt.Errorf("devca: eSeal public key is %T; the HSM key must be RSA with at least %d bits", pub, minRSABits)
	}
	if bits := rsaPub.N.BitLen(); bits < minRSABits {
		return fmt.Errorf("devca: eSeal RSA key has %d bits; the HSM key must be RSA with at least %d bits", bits, minRSABits)
	}
	return nil
}
