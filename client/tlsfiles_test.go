package client_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/internal/tlsfiles/tlsfilestest"

	"github.com/portvakt/portvakt/client"
)

func put(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// presented is the common name of the certificate the configuration
// presents at a handshake now.
func presented(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	pair, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.Subject.CommonName
}

// TestTLSConfigReloadsItsFiles: the certificate presented is the files'
// as they are at the handshake; a set that does not load (a file caught
// half-written, a key saved before its certificate) leaves the one before
// in use until it does.
func TestTLSConfigReloadsItsFiles(t *testing.T) {
	dir := t.TempDir()
	opts := client.Options{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CAFile: filepath.Join(dir, "ca.crt")}
	certA, keyA := tlsfilestest.SelfSigned(t, "a")
	put(t, opts.CertFile, certA)
	put(t, opts.KeyFile, keyA)
	put(t, opts.CAFile, certA)
	cfg, err := client.TLSConfig(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := presented(t, cfg); got != "a" {
		t.Fatalf("presents %q, want a", got)
	}

	certB, keyB := tlsfilestest.SelfSigned(t, "b")
	put(t, opts.KeyFile, keyB) // the key first: the pair does not match yet
	if got := presented(t, cfg); got != "a" {
		t.Fatalf("with the key saved before its certificate it presents %q, want a still", got)
	}
	put(t, opts.CertFile, certB)
	if got := presented(t, cfg); got != "b" {
		t.Fatalf("after the rotation it presents %q, want b", got)
	}

	// Caught half-written, in place.
	if err := os.WriteFile(opts.CertFile, certA[:len(certA)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if got := presented(t, cfg); got != "b" {
		t.Fatalf("with the certificate half-written it presents %q, want b still", got)
	}
	put(t, opts.KeyFile, keyA)
	put(t, opts.CertFile, certA)
	if got := presented(t, cfg); got != "a" {
		t.Fatalf("once the files are whole again it presents %q, want a", got)
	}
}

// TestTLSConfigRefusesBadFiles: at the start, a file that does not load
// is an error naming it and what is wrong.
func TestTLSConfigRefusesBadFiles(t *testing.T) {
	certA, keyA := tlsfilestest.SelfSigned(t, "a")
	_, keyB := tlsfilestest.SelfSigned(t, "b")
	tests := []struct {
		name           string
		cert, key, ca  []byte
		wantFile, want string
	}{
		{"a certificate cut short", certA[:len(certA)/2], keyA, certA, "tls.crt", "a PEM block that does not end"},
		{"another's key", certA, keyB, certA, "tls.key", "private key does not match public key"},
		{"a CA file without a certificate", certA, keyA, []byte("nothing\n"), "ca.crt", "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := client.Options{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CAFile: filepath.Join(dir, "ca.crt")}
			put(t, opts.CertFile, tt.cert)
			put(t, opts.KeyFile, tt.key)
			put(t, opts.CAFile, tt.ca)
			_, err := client.TLSConfig(opts)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tt.wantFile)) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("TLSConfig: %v, want an error naming %s and %q", err, tt.wantFile, tt.want)
			}
		})
	}
}
