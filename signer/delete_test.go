package signer

import (
	"crypto"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestDeleteKey: a key deleted from the token no longer signs, is not
// found again, and does not make the token look lost: the probe, which
// asks every key on the connection, skips it (CI saw the token lost with
// CKR_OBJECT_HANDLE_INVALID when it did not), and a reconnection does not
// look for it. The other keys sign on.
func TestDeleteKey(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	f := newFixture(t)
	cfg := f.config().Token
	cfg.ProbeInterval = 20 * time.Millisecond
	tok, err := OpenToken(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	eseal, err := tok.Key(KeyConfig{KeyLabel: "eseal"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := tok.GenerateKey("rotated-out", 2048)
	if err != nil {
		t.Fatal(err)
	}
	digest := digestOf(crypto.SHA256, []byte("a grant's signing input"))
	if err := tok.DeleteKey("rotated-out"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Sign(nil, digest, crypto.SHA256); !errors.Is(err, ErrKeyDeleted) {
		t.Errorf("the deleted key signs: %v; want ErrKeyDeleted", err)
	}
	if _, err := tok.Key(KeyConfig{KeyLabel: "rotated-out", NoCertificate: true}); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("the deleted key found again: %v", err)
	}
	if err := tok.DeleteKey("rotated-out"); err != nil {
		t.Errorf("deleting a key gone already: %v", err)
	}
	time.Sleep(10 * cfg.ProbeInterval) // ten probes
	if err := tok.Health(); err != nil || tok.Reconnects() != 0 {
		t.Fatalf("after the deletion the token is %v, reconnected %d times; want it healthy, never lost", err, tok.Reconnects())
	}
	if _, err := eseal.Sign(nil, digest, crypto.SHA256); err != nil {
		t.Errorf("the other key after the deletion: %v", err)
	}
}
