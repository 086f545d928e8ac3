// Package tlsfiles reads TLS certificates, keys and CA bundles from PEM
// files, for the daemon's listener and the Go client alike, with errors
// that name the file (and the line, for a certificate) and say what to
// fix. A file cut short, as one caught while it is being written, is an
// error, not the certificates before the cut.
package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

var beginMarker = []byte("-----BEGIN")

// unended is what a PEM block cut short gets.
const unended = "a PEM block that does not end (a file still being written? write it beside and rename it into place)"

// ParseCertificates is every CERTIFICATE block of a PEM file's data, in
// order; name is the file's, for errors. Blocks of other types (a key kept
// beside the certificate) are skipped. Text between blocks is allowed, as
// OpenSSL writes it; a block begun and not ended is not.
func ParseCertificates(name string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		at := bytes.Index(rest, beginMarker)
		if at < 0 {
			break
		}
		line := 1 + bytes.Count(data[:len(data)-len(rest)+at], []byte("\n"))
		block, after := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%s:%d: %s", name, line, unended)
		}
		rest = after
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not a valid certificate: %w", name, line, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", name)
	}
	return certs, nil
}

// CertPool is the CA certificates of a PEM file's data; name is the
// file's, for errors.
func CertPool(name string, data []byte) (*x509.CertPool, error) {
	certs, err := ParseCertificates(name, data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// KeyPair is a certificate chain (leaf first) and its private key, from
// the two files' names and data. Its Leaf is set. Its error starts with
// the name of the file at fault.
func KeyPair(certFile string, certPEM []byte, keyFile string, keyPEM []byte) (tls.Certificate, error) {
	certs, err := ParseCertificates(certFile, certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if at := bytes.Index(keyPEM, beginMarker); at >= 0 {
		if block, _ := pem.Decode(keyPEM[at:]); block == nil {
			line := 1 + bytes.Count(keyPEM[:at], []byte("\n"))
			return tls.Certificate{}, fmt.Errorf("%s:%d: %s", keyFile, line, unended)
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w (it must hold the PEM private key of the certificate in %s)", keyFile, err, certFile)
	}
	pair.Leaf = certs[0]
	return pair, nil
}

// ReadKeyPair is KeyPair of the files' contents.
func ReadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return KeyPair(certFile, certPEM, keyFile, keyPEM)
}

// ReadCertPool is CertPool of the file's contents.
func ReadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return CertPool(path, data)
}
