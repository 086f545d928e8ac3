package signer

import (
	"crypto/rsa"
	"fmt"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/internal/p11"
)

// KeyInfo is a key pair on the token, as Keys lists it.
type KeyInfo struct {
	Label  string
	ID     []byte
	Public *rsa.PublicKey // nil for a key that is not RSA
}

// Keys lists the token's key pairs, on the connection the token keeps
// (no context of its own). The token must be reachable.
func (t *Token) Keys() ([]KeyInfo, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.conn == nil {
		return nil, t.unavailableLocked()
	}
	defer p11.LockObjects(t.cfg.Module)()
	pairs, err := t.conn.ctx.FindAllKeyPairs()
	if err != nil {
		return nil, fmt.Errorf("listing the keys on token %q: %w", t.cfg.TokenLabel, err)
	}
	keys := make([]KeyInfo, 0, len(pairs))
	for _, k := range pairs {
		attrs, err := t.conn.ctx.GetAttributes(k, []crypto11.AttributeType{crypto11.CkaLabel, crypto11.CkaId})
		if err != nil {
			return nil, fmt.Errorf("reading a key's label and id on token %q: %w", t.cfg.TokenLabel, err)
		}
		info := KeyInfo{}
		if a := attrs[crypto11.CkaLabel]; a != nil {
			info.Label = string(a.Value)
		}
		if a := attrs[crypto11.CkaId]; a != nil {
			info.ID = a.Value
		}
		info.Public, _ = k.Public().(*rsa.PublicKey)
		keys = append(keys, info)
	}
	return keys, nil
}
