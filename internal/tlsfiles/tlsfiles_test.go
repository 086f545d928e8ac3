package tlsfiles

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/internal/tlsfiles/tlsfilestest"
)

func TestParseCertificates(t *testing.T) {
	a, _ := tlsfilestest.SelfSigned(t, "a")
	b, _ := tlsfilestest.SelfSigned(t, "b")
	bundle := string(a) + "subject=CN=b\n" + string(b)
	lines := strings.Count(string(a), "\n")
	tests := []struct {
		name, data string
		want       []string // common names
		err        string
	}{
		{"one", string(a), []string{"a"}, ""},
		{"a bundle with OpenSSL's text between", bundle, []string{"a", "b"}, ""},
		{"a key beside is skipped", string(a) + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", []string{"a"}, ""},
		{"cut in the second", bundle[:len(bundle)-40], nil, "ca.pem:" + itoa(lines+2) + ": a PEM block that does not end"},
		{"cut in the first", string(a[:len(a)/2]), nil, "ca.pem:1: a PEM block that does not end"},
		{"empty", "", nil, "ca.pem holds no PEM certificate"},
		{"not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", nil, "ca.pem:1: not a valid certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := ParseCertificates("ca.pem", []byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range certs {
				names = append(names, c.Subject.CommonName)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("certificates %v, want %v", names, tt.want)
			}
		})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func TestKeyPair(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := tlsfilestest.SelfSigned(t, "a")
	_, keyB := tlsfilestest.SelfSigned(t, "b")
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := file("tls.crt", certA)
	tests := []struct {
		name string
		key  []byte
		err  string
	}{
		{"matching", keyA, ""},
		{"another's key", keyB, "key.pem: tls: private key does not match public key (it must hold the PEM private key of the certificate in " + cert + ")"},
		{"a key cut short", keyA[:len(keyA)-30], "key.pem:1: a PEM block that does not end"},
		{"no key", []byte("nothing"), "key.pem: tls: failed to find any PEM data in key input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := ReadKeyPair(cert, file("key.pem", tt.key))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pair.Leaf == nil || pair.Leaf.Subject.CommonName != "a" {
				t.Fatalf("leaf %v", pair.Leaf)
			}
		})
	}
}

// FuzzParseCertificates: any data is certificates or an error naming the
// file, never a panic, and never no certificates without an error.
func FuzzParseCertificates(f *testing.F) {
	a, _ := tlsfilestest.SelfSigned(f, "a")
	f.Add(a)
	f.Add(a[:len(a)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n"))
	f.Add(append(append([]byte{}, a...), a...))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates("f.pem", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.pem") {
				t.Fatalf("error %q does not start with the file's name", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
	})
}
