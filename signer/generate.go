package signer

import (
	"crypto/rand"
	"fmt"

	"github.com/portvakt/portvakt/internal/p11"
)

// GenerateKey makes an RSA key pair of bits (2048 or 3072) inside the
// token under label, with a random 16-byte CKA_ID, signing only and never
// extractable, and opens it: a key born in the HSM to be registered at
// Digdir by its kid, which needs no certificate. A label a key already
// has is refused. The token must be reachable.
func (t *Token) GenerateKey(label string, bits int) (*Signer, error) {
	switch {
	case bits != 2048 && bits != 3072:
		return nil, fmt.Errorf("key size %d: choose 2048 or 3072 bits", bits)
	case label == "":
		return nil, fmt.Errorf("a key label is required")
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	if err := t.generate(label, id, bits); err != nil {
		return nil, err
	}
	return t.Key(KeyConfig{KeyLabel: label, KeyID: id, NoCertificate: true})
}

func (t *Token) generate(label string, id []byte, bits int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return t.unavailableLocked()
	}
	defer p11.LockObjects(t.cfg.Module)()
	existing, err := t.conn.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return fmt.Errorf("looking for key %q on token %q: %w", label, t.cfg.TokenLabel, err)
	}
	if len(existing) > 0 {
		return fmt.Errorf("the token %q already holds a key labelled %q; choose another label", t.cfg.TokenLabel, label)
	}
	public, private, err := p11.SigningKeyTemplates(label, id)
	if err != nil {
		return err
	}
	if _, err := t.conn.ctx.GenerateRSAKeyPairWithAttributes(public, private, bits); err != nil {
		return fmt.Errorf("generating a %d-bit RSA key on token %q: %w", bits, t.cfg.TokenLabel, err)
	}
	return nil
}
