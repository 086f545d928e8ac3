package signer

import (
	"errors"
	"fmt"

	"github.com/portvakt/portvakt/internal/p11"
)

// ErrKeyDeleted is a Signer's answer once its key was deleted.
var ErrKeyDeleted = errors.New("the key was deleted from the HSM")

// DeleteKey removes the key pair labelled label from the token, both
// halves: a rotated key's end. Signers of it answer ErrKeyDeleted from
// then on, and a reconnection no longer looks for it. A label no key has
// is no error: the key is gone already. The token must be reachable.
func (t *Token) DeleteKey(label string) error {
	if label == "" {
		return errors.New("a key label is required")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return t.unavailableLocked()
	}
	defer p11.LockObjects(t.cfg.Module)()
	pairs, err := t.conn.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return fmt.Errorf("looking for key %q on token %q: %w", label, t.cfg.TokenLabel, err)
	}
	for _, k := range pairs {
		d, ok := k.(interface{ Delete() error })
		if !ok {
			return fmt.Errorf("key %q on token %q cannot be deleted through crypto11 (%T)", label, t.cfg.TokenLabel, k)
		}
		if err := d.Delete(); err != nil {
			return fmt.Errorf("deleting key %q on token %q: %w", label, t.cfg.TokenLabel, err)
		}
	}
	for _, s := range t.keys {
		if s.key.KeyLabel == label {
			s.deleted.Store(true)
			// Out of the connection too: the probe asks every key there,
			// and a deleted one's handle answers CKR_OBJECT_HANDLE_INVALID,
			// which means the token is gone.
			t.conn.keys[s.index] = nil
		}
	}
	return nil
}
