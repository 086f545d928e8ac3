package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
)

// handshake runs a mutual-TLS handshake over a pipe, the server side
// through TLSCredentials, with a client certificate whose URI SAN is
// uri, and returns the server's AuthInfo.
func handshake(t *testing.T, uri string) credentials.AuthInfo {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, edit func(*x509.Certificate)) tls.Certificate {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), NotBefore: ca.NotBefore, NotAfter: ca.NotAfter,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		edit(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	server := issue(2, func(c *x509.Certificate) { c.DNSNames = []string{"portvakt.test"} })
	client := issue(3, func(c *x509.Certificate) { c.URIs = []*url.URL{u} })
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	creds := TLSCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{server}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}))
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	clientErr := make(chan error, 1)
	go func() {
		clientErr <- tls.Client(cc, &tls.Config{Certificates: []tls.Certificate{client}, RootCAs: pool, ServerName: "portvakt.test", NextProtos: []string{"h2"}}).Handshake()
	}()
	_, info, err := creds.ServerHandshake(sc)
	if err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-clientErr; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	return info
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
