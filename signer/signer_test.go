package signer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // testing that SHA-1 is refused
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/secret"
)

func TestOpenFindsKeyAndChainOnToken(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	chain := s.Chain()
	if len(chain) != 3 {
		t.Fatalf("chain has %d certificates, want eSeal, issuing CA, root", len(chain))
	}
	for i, want := range f.chain {
		if !chain[i].Equal(want) {
			t.Errorf("chain[%d] = %q, want %q", i, chain[i].Subject, want.Subject)
		}
	}
	if !s.Public().(*rsa.PublicKey).Equal(f.chain[0].PublicKey) {
		t.Fatal("Public() is not the certificate's key")
	}
}

func TestSignAlgorithms(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	for _, hash := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		t.Run(hash.String(), func(t *testing.T) {
			digest := digestOf(hash, []byte("grant signing input"))
			sig, err := s.Sign(rand.Reader, digest, hash)
			if err != nil {
				t.Fatal(err)
			}
			verify(t, s.Certificate(), hash, digest, sig)
		})
	}
}

func TestSignRefusesWhatGrantsDoNotUse(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	sha1Digest := sha1.Sum([]byte("x")) //nolint:gosec
	tests := []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
		want   string
	}{
		{"PSS", digestOf(crypto.SHA256, nil), &rsa.PSSOptions{Hash: crypto.SHA256}, "PSS is not supported"},
		{"SHA-1", sha1Digest[:], crypto.SHA1, "not supported"},
		{"short digest", []byte{1, 2, 3}, crypto.SHA256, "digest is 3 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Sign(rand.Reader, tt.digest, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sign() error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSignatureVerifiesUnderOpenSSL checks the signature with a verifier
// that shares no code with Go: openssl, given only the certificate.
func TestSignatureVerifiesUnderOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not found: install it (make deps)")
	}
	f := newFixture(t)
	s := f.open(t)
	dir := t.TempDir()
	certFile := filepath.Join(dir, "eseal.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
	pub, err := exec.Command(openssl, "x509", "-in", certFile, "-noout", "-pubkey").Output()
	if err != nil {
		t.Fatalf("openssl x509: %v", err)
	}
	pubFile := filepath.Join(dir, "pub.pem")
	writeFile(t, pubFile, pub)
	data := []byte("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ0ZXN0In0")
	dataFile := filepath.Join(dir, "data")
	writeFile(t, dataFile, data)
	for _, hash := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		sig, err := s.Sign(nil, digestOf(hash, data), hash)
		if err != nil {
			t.Fatal(err)
		}
		sigFile := filepath.Join(dir, "sig")
		writeFile(t, sigFile, sig)
		digestFlag := "-" + strings.ToLower(strings.ReplaceAll(hash.String(), "-", ""))
		out, err := exec.Command(openssl, "dgst", digestFlag, "-verify", pubFile, "-signature", sigFile, dataFile).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verified OK") {
			t.Fatalf("openssl dgst %s: %v: %s", digestFlag, err, out)
		}
		// And a tampered message must fail, or the check above proves nothing.
		writeFile(t, dataFile, append(data, '!'))
		if out, err := exec.Command(openssl, "dgst", digestFlag, "-verify", pubFile, "-signature", sigFile, dataFile).CombinedOutput(); err == nil {
			t.Fatalf("openssl verified a tampered message: %s", out)
		}
		writeFile(t, dataFile, data)
	}
}

func TestOpenWithCertificateFile(t *testing.T) {
	f := newFixture(t)
	file := filepath.Join(t.TempDir(), "chain.pem")
	var pemData []byte
	for _, c := range f.chain[:2] {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	writeFile(t, file, pemData)
	cfg := f.config()
	cfg.Key.CertificateFile = file
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Chain(); len(got) != 2 || !got[0].Equal(f.chain[0]) || !got[1].Equal(f.chain[1]) {
		t.Fatalf("chain from file = %d certificates, want the 2 in the file", len(got))
	}
}

func TestOpenErrorsSayWhatToFix(t *testing.T) {
	f := newFixture(t)
	// A second key, whose certificate is not ours; on the same token, as
	// opencryptoki's soft token serves one token at a time.
	other := f.tok.NewCertifiedKey(t, "other", sharedCA(t))
	otherCert := filepath.Join(t.TempDir(), "other.pem")
	writeFile(t, otherCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other[0].Raw}))
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	wrongPIN, _ := secret.New("wrong-pin-0000")

	tests := []struct {
		name   string
		change func(*Config)
		want   string
		is     error
	}{
		{"certificate of another key", func(c *Config) { c.Key.CertificateFile = otherCert }, "is not for this key", ErrMismatch},
		{"private key in certificate file", func(c *Config) { c.Key.CertificateFile = keyFile }, `"PRIVATE KEY"`, nil},
		{"missing certificate file", func(c *Config) { c.Key.CertificateFile = "/nonexistent.pem" }, "no such file", nil},
		{"unknown key label", func(c *Config) { c.Key.KeyLabel = "nope" }, "hsm list", ErrKeyNotFound},
		{"unknown token", func(c *Config) { c.Token.TokenLabel = "no-such-token" }, "tokens present", nil},
		{"wrong PIN", func(c *Config) { c.Token.PIN = wrongPIN }, "refused the PIN", nil},
		{"missing module", func(c *Config) { c.Token.Module = "/nonexistent/libpkcs11.so" }, "correct the module path", nil},
		{"no key selector", func(c *Config) { c.Key.KeyLabel = "" }, "neither a key label nor a key id", nil},
		{"no PIN", func(c *Config) { c.Token.PIN = secret.Value{} }, "no PIN was given", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config()
			tt.change(&cfg)
			s, err := Open(cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open() error = %v, want it to say %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Open() error = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
}

// TestTokenCertificateOfAnotherKeyIsNotUsed: with no certificate for the key
// on the token, Open must fail rather than pick any certificate it finds.
func TestTokenCertificateOfAnotherKeyIsNotUsed(t *testing.T) {
	f := newFixture(t)
	f.tok.NewKey(t, "uncertified")
	cfg := f.config()
	cfg.Key.KeyLabel = "uncertified"
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "holds no certificate for key") {
		t.Fatalf("Open of a key without certificate: %v", err)
	}
}

func TestConcurrentSigning(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.Token.MaxSessions = 3 // fewer sessions than goroutines: the pool must queue
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const goroutines, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				digest := digestOf(crypto.SHA256, []byte{byte(g), byte(i)})
				sig, err := s.Sign(nil, digest, crypto.SHA256)
				if err == nil {
					err = rsa.VerifyPKCS1v15(f.chain[0].PublicKey.(*rsa.PublicKey), crypto.SHA256, digest, sig)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSignAfterClose(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, digestOf(crypto.SHA256, nil), crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenByKeyIDOnly(t *testing.T) {
	f := newFixture(t)
	inv, err := hsm.List(f.tok.Token)
	if err != nil || len(inv.Keys) != 1 {
		t.Fatalf("listing the token: %d keys, %v", len(inv.Keys), err)
	}
	cfg := f.config()
	cfg.Key.KeyLabel, cfg.Key.KeyID = "", inv.Keys[0].ID
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	digest := digestOf(crypto.SHA256, []byte("by id"))
	sig, err := s.Sign(nil, digest, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, f.chain[0], crypto.SHA256, digest, sig)
}

// TestSessionPoolIsBounded gives the Signer one signing session and no
// patience, and signs from many goroutines: some callers must be told the
// HSM is busy instead of an unbounded number of sessions being opened.
func TestSessionPoolIsBounded(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.Token.MaxSessions = 2                // one holds the login, one signs
	cfg.Token.SessionWait = time.Millisecond // shorter than one signature
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var busy, signed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200 && busy.Load() == 0; i++ {
				digest := digestOf(crypto.SHA256, []byte{byte(i)})
				sig, err := s.Sign(nil, digest, crypto.SHA256)
				switch {
				case errors.Is(err, ErrBusy):
					busy.Add(1)
				case err != nil:
					t.Error(err)
					return
				default:
					if verifyQuiet(f, digest, sig) != nil {
						t.Error("a signature does not verify")
					}
					signed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if busy.Load() == 0 {
		t.Fatalf("no caller was told the HSM is busy after %d signatures through one session", signed.Load())
	}
	if signed.Load() == 0 {
		t.Fatal("no signature succeeded")
	}
}
