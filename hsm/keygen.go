package hsm

import (
	"crypto/rand"
	"fmt"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/internal/p11"
)

// Key sizes Portvakt generates. 3072 bits is the default: the eSeal CAs
// accept 2048 and 3072, and 3072 lasts past 2030.
const (
	DefaultKeyBits = 3072
	MinKeyBits     = 2048
)

// KeySpec describes a key to generate.
type KeySpec struct {
	// Label is required: the daemon's configuration finds the key by it.
	Label string
	// ID is CKA_ID; a random 16-byte id is chosen when empty.
	ID []byte
	// Bits is the RSA modulus size: 2048 or 3072 (default).
	Bits int
}

// GenerateKey makes an RSA key pair inside the token. The private key is
// sensitive, never extractable, and can only sign.
func GenerateKey(t Token, spec KeySpec) (p11.KeyObject, error) {
	if spec.Bits == 0 {
		spec.Bits = DefaultKeyBits
	}
	if spec.Bits != 2048 && spec.Bits != 3072 {
		return p11.KeyObject{}, fmt.Errorf("key size %d: choose 2048 or 3072 bits", spec.Bits)
	}
	if spec.Label == "" {
		return p11.KeyObject{}, fmt.Errorf("a key label is required")
	}
	if len(spec.ID) == 0 {
		spec.ID = make([]byte, 16)
		if _, err := rand.Read(spec.ID); err != nil {
			return p11.KeyObject{}, err
		}
	}
	var key p11.KeyObject
	err := t.withToken(func(ctx *crypto11.Context, raw *rawSession) error {
		if err := checkFree(raw, spec.Label, spec.ID); err != nil {
			return err
		}
		public, private, err := p11.SigningKeyTemplates(spec.Label, spec.ID)
		if err != nil {
			return err
		}
		if _, err := ctx.GenerateRSAKeyPairWithAttributes(public, private, spec.Bits); err != nil {
			return fmt.Errorf("generating a %d-bit RSA key on token %q: %w", spec.Bits, t.Label, err)
		}
		key, err = findKey(raw, KeySelector{Label: spec.Label, ID: spec.ID})
		return err
	})
	return key, err
}

// checkFree refuses a label or id that a private key already has.
func checkFree(raw *rawSession, label string, id []byte) error {
	keys, err := raw.PrivateKeys(raw.handle)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Label == label {
			return fmt.Errorf("the token already holds a key labelled %q; choose another label", label)
		}
		if string(k.ID) == string(id) {
			return fmt.Errorf("the token already holds a key with id %x (label %q); choose another id", id, k.Label)
		}
	}
	return nil
}
