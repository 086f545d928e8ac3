package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Validity periods of the CA certificates. The issuing CA expires well
// before the root so that certificates chained to it never outlive the root.
const (
	rootValidity    = 10 * 365 * 24 * time.Hour
	issuingValidity = 5 * 365 * 24 * time.Hour
)

// clockSkew is how far NotBefore is backdated, so that a certificate issued
// just now is not rejected as "not yet valid" by a verifier whose clock runs
// slightly behind ours.
const clockSkew = 5 * time.Minute

// CA is a development certificate authority: a root and an issuing CA with
// their private keys. See the package documentation for why it must never be
// used in production.
type CA struct {
	// Root is the self-signed root CA certificate; verifiers trust it.
	Root *x509.Certificate
	// Issuing is the intermediate CA certificate, signed by Root, that
	// signs eSeal certificates.
	Issuing *x509.Certificate

	rootKey    crypto.Signer
	issuingKey crypto.Signer
}

// New creates a CA named "<name> Root CA" with an intermediate
// "<name> Issuing CA", both with fresh ECDSA P-256 keys. P-256 keeps
// generation fast in tests; the eSeal key itself is RSA and lives in an HSM,
// so it is never created here.
func New(name string) (*CA, error) {
	if name == "" {
		return nil, errors.New("devca: CA name is empty; pass a name such as \"Portvakt Dev\"")
	}
	now := time.Now()

	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generating root CA key: %w", err)
	}
	rootTmpl, err := caTemplate(name, "Root CA", rootKey.Public(), now, rootValidity)
	if err != nil {
		return nil, err
	}
	// One intermediate level below the root, as with Buypass and Commfides.
	rootTmpl.MaxPathLen = 1
	// A self-signed certificate's authority is itself; Go only derives
	// AuthorityKeyId from the parent when issuer and subject differ.
	rootTmpl.AuthorityKeyId = rootTmpl.SubjectKeyId
	root, err := createCertificate(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("devca: creating root CA certificate: %w", err)
	}

	issuingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generating issuing CA key: %w", err)
	}
	issuingTmpl, err := caTemplate(name, "Issuing CA", issuingKey.Public(), now, issuingValidity)
	if err != nil {
		return nil, err
	}
	// The issuing CA signs only end-entity certificates.
	issuingTmpl.MaxPathLen = 0
	issuingTmpl.MaxPathLenZero = true
	issuing, err := createCertificate(issuingTmpl, root, issuingKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("devca: creating issuing CA certificate: %w", err)
	}

	return &CA{Root: root, Issuing: issuing, rootKey: rootKey, issuingKey: issuingKey}, nil
}

// Chain returns the certificates a verifier needs above an eSeal, nearest
// first: the issuing CA, then the root. This is the order used in an x5c
// header after the leaf.
func (ca *CA) Chain() []*x509.Certificate {
	return []*x509.Certificate{ca.Issuing, ca.Root}
}

// Pool returns a certificate pool holding only the root, for use as
// x509.VerifyOptions.Roots. The issuing CA is deliberately left out: it must
// reach the verifier as an intermediate, as it would in production.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root)
	return pool
}

// caTemplate returns the common parts of a CA certificate template.
func caTemplate(name, role string, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   name + " " + role,
			Organization: []string{name},
			Country:      []string{"NO"},
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
	}, nil
}

// createCertificate signs template with signer under parent and parses the
// result, so callers get a certificate exactly as a verifier would see it.
func createCertificate(template, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// randomSerial returns a random positive 128-bit serial number. Random
// serials are what the CA/Browser Forum requires of public CAs, and they keep
// certificates from separate dev CAs from colliding.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("devca: generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID derives a key identifier as in RFC 7093 section 2 method 1:
// the leftmost 160 bits of the SHA-256 hash of the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("devca: encoding public key for key identifier: %w", err)
	}
	var spki struct {
		Algorithm        pkix.AlgorithmIdentifier
		SubjectPublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("devca: decoding public key for key identifier: %w", err)
	}
	sum := sha256.Sum256(spki.SubjectPublicKey.Bytes)
	return sum[:20], nil
}
