package signer

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestKeysOfATokenShareItsFate: two keys on one token, found through one
// Token. When the token goes away both are unavailable together; when it
// is back both sign again, without a caller asking first.
func TestKeysOfATokenShareItsFate(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	f := newFixture(t)
	second := f.tok.NewCertifiedKey(t, "eseal-2", sharedCA(t))
	cfg := f.config().Token
	cfg.ProbeInterval = 50 * time.Millisecond
	tok, err := OpenToken(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	a, err := tok.Key(KeyConfig{KeyLabel: "eseal"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tok.Key(KeyConfig{KeyLabel: "eseal-2"})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Certificate().Equal(second[0]) || a.Certificate().Equal(b.Certificate()) {
		t.Fatal("each key must carry its own certificate")
	}

	bringBack := f.tok.TakeAway(t)
	// Nobody signs: the probe must notice, for both keys at once.
	waitFor(t, "the probe to see the token gone", func() bool { return tok.Health() != nil })
	for _, s := range []*Signer{a, b} {
		if _, err := s.Sign(nil, digestOf(crypto.SHA256, []byte("x")), crypto.SHA256); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("key %s while its token is away: %v, want ErrUnavailable", s.KeyLabel(), err)
		}
	}
	bringBack()
	waitFor(t, "the token to be back without a caller", func() bool { return tok.Health() == nil })
	for _, s := range []*Signer{a, b} {
		digest := digestOf(crypto.SHA256, []byte(s.KeyLabel()))
		sig, err := s.Sign(nil, digest, crypto.SHA256)
		if err != nil {
			t.Fatalf("key %s after its token came back: %v", s.KeyLabel(), err)
		}
		verify(t, s.Certificate(), crypto.SHA256, digest, sig)
	}
	if tok.Reconnects() != 1 {
		t.Fatalf("Reconnects() = %d, want 1: one token, one recovery, however many keys", tok.Reconnects())
	}
}

// TestOtherTokenOfTheModuleUndisturbed: while one token of a module is
// away, the module is restarted to look for it; the other token's callers
// wait through each restart and are never refused.
func TestOtherTokenOfTheModuleUndisturbed(t *testing.T) {
	softhsmtest.NeedTokens(t, 2)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	lost, kept := newFixture(t), newFixture(t)
	lostCfg := lost.config()
	lostCfg.Token.ProbeInterval = 50 * time.Millisecond
	lostCfg.Token.Backoff = Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	lostSigner, err := Open(lostCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lostSigner.Close() })
	keptSigner := kept.open(t)
	load := startSigning(t, keptSigner, kept)
	load.waitForSuccesses(t, 5)

	bringBack := lost.tok.TakeAway(t)
	waitFor(t, "the lost token's outage to be seen", func() bool { return lostSigner.Health() != nil })
	waitFor(t, "several module restarts", func() bool { return strings.Count(lost.logs.String(), "restarting the PKCS#11 module") >= 3 })
	before := load.successes.Load()
	load.waitForSuccesses(t, before+5)
	bringBack()
	waitFor(t, "the lost token to be back", func() bool { return lostSigner.Health() == nil })
	load.stop()
	if n := load.failures.Load(); n != 0 {
		t.Errorf("the other token's callers were refused %d times", n)
	}
	if other := load.otherErrors(); len(other) > 0 {
		t.Errorf("the other token's callers got errors: %v", other)
	}
	if load.wrongSignatures.Load() != 0 {
		t.Errorf("%d signatures did not verify", load.wrongSignatures.Load())
	}
	if keptSigner.Health() != nil || keptSigner.Reconnects() != 0 {
		t.Errorf("the other token: health %v, %d reconnections; a module restart is no outage of it", keptSigner.Health(), keptSigner.Reconnects())
	}
}

// TestKeyWithoutCertificate: the audit key has no certificate. It opens
// with NoCertificate, signs, and after an outage is checked against the
// public half it had at start.
func TestKeyWithoutCertificate(t *testing.T) {
	f := newFixture(t)
	f.tok.NewKey(t, "audit")
	cfg := f.config()
	cfg.Key = KeyConfig{KeyLabel: "audit", NoCertificate: true}
	cfg.Token.ProbeInterval = 50 * time.Millisecond
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if s.Certificate() != nil {
		t.Fatal("a key opened without a certificate has one")
	}
	sign := func() {
		t.Helper()
		digest := digestOf(crypto.SHA256, []byte("checkpoint"))
		sig, err := s.Sign(nil, digest, crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(s.Public().(*rsa.PublicKey), crypto.SHA256, digest, sig); err != nil {
			t.Fatalf("the signature does not verify with the key's public half: %v", err)
		}
	}
	sign()
	if err := s.CheckSigns(); err != nil {
		t.Fatalf("CheckSigns: %v", err)
	}
	bringBack := f.tok.TakeAway(t)
	waitFor(t, "the probe to see the token gone", func() bool { return s.Health() != nil })
	bringBack()
	waitFor(t, "the key to be back", func() bool { return s.Health() == nil })
	sign()

	cfg.Key = KeyConfig{KeyLabel: "audit"}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "holds no certificate") {
		t.Fatalf("opening a key without certificate as an eSeal: %v, want it refused", err)
	}
}

// TestKeyAskedAgain: a key asked for again by the same config is the same
// Signer, and the Token keeps one for it (RegisterKey asks per request);
// a key deleted and made again under its label is a new Signer that signs
// with the new key.
func TestKeyAskedAgain(t *testing.T) {
	f := newFixture(t)
	tok, err := OpenToken(f.config().Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	made, err := tok.GenerateKey("registered", 2048)
	if err != nil {
		t.Fatal(err)
	}
	cfg := KeyConfig{KeyLabel: "registered", NoCertificate: true}
	first, err := tok.Key(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kept := len(tok.keys)
	for range 3 {
		again, err := tok.Key(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Fatal("the same key asked for again is another Signer")
		}
	}
	if len(tok.keys) != kept {
		t.Fatalf("the Token keeps %d signers after the key was asked for 4 times, want %d", len(tok.keys), kept)
	}
	if withCert, err := tok.Key(KeyConfig{KeyLabel: "eseal"}); err != nil || withCert == first {
		t.Fatalf("another key: %v, the same Signer: %v", err, withCert == first)
	}

	if err := tok.DeleteKey("registered"); err != nil {
		t.Fatal(err)
	}
	remade, err := tok.GenerateKey("registered", 2048)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tok.Key(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again == first || !again.Public().(*rsa.PublicKey).Equal(remade.Public()) || again.Public().(*rsa.PublicKey).Equal(made.Public()) {
		t.Fatal("the key made again under its label must be a Signer of its own, with the new key")
	}
	digest := digestOf(crypto.SHA256, []byte("remade"))
	sig, err := again.Sign(nil, digest, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(remade.Public().(*rsa.PublicKey), crypto.SHA256, digest, sig); err != nil {
		t.Fatalf("the remade key's Signer signs with another key: %v", err)
	}
}
