package signer

import (
	"crypto"
	"crypto/rsa"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestGenerateKey: a key generated through the daemon's open token signs,
// its signature verifies with its public half, it is on the token for
// good, and a label already taken is refused.
func TestGenerateKey(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	f := newFixture(t)
	tok, err := OpenToken(f.config().Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })

	s, err := tok.GenerateKey("registered-2027", 2048)
	if err != nil {
		t.Fatal(err)
	}
	if s.Certificate() != nil || s.KeyLabel() != "registered-2027" {
		t.Errorf("the new key: certificate %v, label %q; want none and its label", s.Certificate(), s.KeyLabel())
	}
	digest := digestOf(crypto.SHA256, []byte("a grant's signing input"))
	sig, err := s.Sign(nil, digest, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := s.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) != nil {
		t.Fatal("the new key's signature does not verify with its public half")
	}

	// On the token for good: found again by its label alone. (Its
	// attributes are p11.SigningKeyTemplates', which hsm's
	// TestGenerateKeyIsSensitiveAndNeverExtractable checks.)
	again, err := tok.Key(KeyConfig{KeyLabel: "registered-2027", NoCertificate: true})
	if err != nil || !again.Public().(*rsa.PublicKey).Equal(pub) {
		t.Fatalf("the new key found again: %v", err)
	}

	if _, err := tok.GenerateKey("eseal", 2048); err == nil || !strings.Contains(err.Error(), `already holds a key labelled "eseal"`) {
		t.Errorf("a label in use: %v", err)
	}
	if _, err := tok.GenerateKey("small", 1024); err == nil || !strings.Contains(err.Error(), "choose 2048 or 3072") {
		t.Errorf("1024 bits: %v", err)
	}
}
