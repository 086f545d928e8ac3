package signer

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/portvakt/portvakt/internal/p11"
)

// maxChainLength stops chain building on a token that holds a loop of
// cross-signed certificates.
const maxChainLength = 8

// loadChain finds the key's certificate and the certificates that issued
// it, from the PEM file if one is configured, else from the token, and
// checks that the certificate holds the key's public half.
func loadChain(cfg *TokenConfig, k *KeyConfig, public *rsa.PublicKey) ([]*x509.Certificate, error) {
	if k.CertificateFile != "" {
		chain, err := ReadPEMChain(k.CertificateFile)
		if err != nil {
			return nil, err
		}
		if err := checkMatches(chain[0], public); err != nil {
			return nil, fmt.Errorf("certificate file %s: %w", k.CertificateFile, err)
		}
		return chain, nil
	}
	certs, err := tokenCertificates(cfg)
	if err != nil {
		return nil, err
	}
	leaf := pickLeaf(certs, public, time.Now())
	if leaf == nil {
		return nil, fmt.Errorf("token %q holds no certificate for key %s: import it with `portvakt hsm import-cert`, or give a certificate file", cfg.TokenLabel, k.String())
	}
	return buildChain(leaf, certs), nil
}

// ReadPEMChain reads a PEM file holding a certificate first and then its
// chain. Blocks other than CERTIFICATE are refused, so that a private key
// pasted into the file by mistake is noticed rather than ignored.
func ReadPEMChain(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate file: %w", err)
	}
	var chain []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 && len(chain) == 0 {
				return nil, fmt.Errorf("certificate file %s is not PEM (expected -----BEGIN CERTIFICATE-----)", path)
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certificate file %s: block %d is %q; the file must hold only CERTIFICATE blocks", path, len(chain)+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate file %s: certificate %d: %w", path, len(chain)+1, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("certificate file %s holds no certificate", path)
	}
	return chain, nil
}

func checkMatches(cert *x509.Certificate, public *rsa.PublicKey) error {
	certKey, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !samePublicKey(certKey, public) {
		return fmt.Errorf("%w: certificate %q (serial %x) is not for this key", ErrMismatch, cert.Subject, cert.SerialNumber)
	}
	return nil
}

// ErrMismatch means the certificate does not hold the key's public half.
var ErrMismatch = errors.New("certificate and key do not match")

func tokenCertificates(cfg *TokenConfig) ([]*x509.Certificate, error) {
	m, err := p11.Open(cfg.Module)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	session, err := m.OpenSession(cfg.TokenLabel)
	if err != nil {
		return nil, err
	}
	defer func() { _ = m.CloseSession(session) }()
	objects, err := m.Certificates(session)
	if err != nil {
		return nil, fmt.Errorf("reading certificates from token %q: %w", cfg.TokenLabel, err)
	}
	certs := make([]*x509.Certificate, len(objects))
	for i, o := range objects {
		certs[i] = o.Certificate
	}
	return certs, nil
}

// pickLeaf chooses the key's certificate among those on the token. After a
// renewal the old and the new certificate may both be there: prefer one that
// is valid now, then the one that lasts longest.
func pickLeaf(certs []*x509.Certificate, public *rsa.PublicKey, now time.Time) *x509.Certificate {
	var best *x509.Certificate
	for _, c := range certs {
		if checkMatches(c, public) != nil {
			continue
		}
		if best == nil || better(c, best, now) {
			best = c
		}
	}
	return best
}

func better(a, b *x509.Certificate, now time.Time) bool {
	aValid := !now.Before(a.NotBefore) && !now.After(a.NotAfter)
	bValid := !now.Before(b.NotBefore) && !now.After(b.NotAfter)
	if aValid != bValid {
		return aValid
	}
	return a.NotAfter.After(b.NotAfter)
}

// buildChain follows issuers from leaf through certs, stopping at a
// self-signed certificate or when no issuer is found. A candidate issuer
// must have signed the certificate, not merely share the issuer's name.
func buildChain(leaf *x509.Certificate, certs []*x509.Certificate) []*x509.Certificate {
	chain := []*x509.Certificate{leaf}
	for cur := leaf; len(chain) < maxChainLength && !isSelfSigned(cur); {
		var next *x509.Certificate
		for _, c := range certs {
			if c.Equal(cur) || !bytes.Equal(c.RawSubject, cur.RawIssuer) {
				continue
			}
			if cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		chain = append(chain, next)
		cur = next
	}
	return chain
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
