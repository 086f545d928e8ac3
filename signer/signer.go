// Package signer keeps the enterprise certificate's private key in a
// PKCS#11 token and signs with it there.
//
// A Token is one token of one PKCS#11 module, opened once however many
// keys are used on it; it probes the token, and recovers by itself, for all
// its keys together, when the token goes away and comes back. A Signer is a
// crypto.Signer bound to one key on a Token and its certificate chain. It
// checks that the certificate belongs to the key, signs RSA PKCS#1 v1.5
// with SHA-256, SHA-384 or SHA-512 (the RS256, RS384 and RS512 of JWS), and
// is safe for concurrent use with the Token's bounded pool of sessions.
package signer

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/internal/p11"
)

// Signer signs with one private key held in a PKCS#11 token. It
// implements crypto.Signer.
type Signer struct {
	token *Token
	index int // of the key in the token's connection
	// deleted is set by Token.DeleteKey: the key is gone from the HSM.
	deleted atomic.Bool
	key     KeyConfig
	public  *rsa.PublicKey
	chain   []*x509.Certificate
	// owner: the Signer was made by Open and closes its Token.
	owner bool
}

// Open opens the token of cfg, finds the key and its certificate chain, and
// checks that the certificate's public key is the key's: a Token with one
// key, closed with the Signer. Any failure is returned with what to fix;
// Open does not retry.
func Open(cfg Config) (*Signer, error) {
	if err := cfg.Key.validate(); err != nil {
		return nil, err
	}
	t, err := OpenToken(cfg.Token)
	if err != nil {
		return nil, err
	}
	s, err := t.Key(cfg.Key)
	if err != nil {
		_ = t.Close()
		return nil, err
	}
	s.owner = true
	return s, nil
}

// Public returns the key's public half.
func (s *Signer) Public() crypto.PublicKey { return s.public }

// Certificate returns the key's certificate; nil for a key opened with
// NoCertificate.
func (s *Signer) Certificate() *x509.Certificate {
	if len(s.chain) == 0 {
		return nil
	}
	return s.chain[0]
}

// checkSameKey checks that a key found again after an outage is this one:
// the key of its certificate, or for a key without one, the same public
// half as at start.
func (s *Signer) checkSameKey(public *rsa.PublicKey) error {
	if len(s.chain) > 0 {
		return checkMatches(s.chain[0], public)
	}
	if !samePublicKey(s.public, public) {
		return fmt.Errorf("%w: its public half is not the one found at start", ErrMismatch)
	}
	return nil
}

// Chain returns the certificate first, then the certificates that issued
// it, as far as they were found. The slice is the caller's to keep.
func (s *Signer) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), s.chain...) }

// KeyLabel returns the label the key was selected by (may be empty).
func (s *Signer) KeyLabel() string { return s.key.KeyLabel }

// Token is the token the key is on.
func (s *Signer) Token() *Token { return s.token }

// Reconnects counts how often the key's token was re-opened.
func (s *Signer) Reconnects() uint64 { return s.token.Reconnects() }

// Health returns nil while the key's token is reachable, else an error
// wrapping ErrUnavailable that says since when and why.
func (s *Signer) Health() error { return s.token.Health() }

// Sign signs digest with RSA PKCS#1 v1.5. opts must be crypto.SHA256,
// crypto.SHA384 or crypto.SHA512 (RS256, RS384, RS512); PSS is refused.
//
// While the token is away, or stalled (a probe went unanswered, as a cut-off
// network HSM leaves it), Sign fails at once with an error wrapping
// ErrUnavailable. While it is busy (every session in use, or the token out
// of sessions or memory) Sign waits, up to the token's session wait, and
// then fails with ErrBusy; neither starts a reconnection.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	observe := s.token.cfg.ObserveSign
	if observe == nil {
		return s.sign(digest, opts)
	}
	start := time.Now()
	sig, err := s.sign(digest, opts)
	observe(time.Since(start), err)
	return sig, err
}

func (s *Signer) sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkDigest(digest, opts); err != nil {
		return nil, err
	}
	t := s.token
	if s.deleted.Load() {
		return nil, fmt.Errorf("key %s: %w", s.key.String(), ErrKeyDeleted)
	}
	if err := t.stalledError(); err != nil {
		return nil, err
	}
	var deadline time.Time
	busy := 0
	for {
		t.mu.RLock()
		c := t.conn
		if c == nil {
			err := t.unavailableLocked()
			t.mu.RUnlock()
			return nil, err
		}
		// crypto11 ignores the rand argument for PKCS#1 v1.5: the token pads.
		sig, err := c.keys[s.index].Sign(nil, digest, opts.HashFunc())
		t.mu.RUnlock()
		if err == nil {
			return sig, nil
		}
		switch {
		case isPoolTimeout(err):
			// crypto11 already waited the whole session wait for a session.
			return nil, fmt.Errorf("%w: all %d HSM sessions of token %q stayed busy for %s", ErrBusy, t.cfg.MaxSessions-1, t.cfg.TokenLabel, t.cfg.SessionWait)
		case p11.Classify(err) == p11.Busy:
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(t.cfg.SessionWait)
			}
			busy++
			wait := busyBackoff.Delay(busy)
			if now.Add(wait).After(deadline) {
				return nil, fmt.Errorf("%w: token %q stayed busy for %s: %w", ErrBusy, t.cfg.TokenLabel, t.cfg.SessionWait, err)
			}
			time.Sleep(wait)
		case p11.Classify(err) == p11.Gone:
			t.lose(c, err)
			return nil, fmt.Errorf("%w: signing with key %s failed, reconnecting: %w", ErrUnavailable, s.key.String(), err)
		default:
			return nil, fmt.Errorf("signing with key %s: %w", s.key.String(), err)
		}
	}
}

// busyBackoff paces retries on a busy token: short, since a session is
// usually free again within one signature.
var busyBackoff = backoff.Policy{Initial: 2 * time.Millisecond, Max: 100 * time.Millisecond}

// Close closes the key's token if the Signer was made by Open; a Signer
// from Token.Key is closed with its Token. Sign fails after Close.
func (s *Signer) Close() error {
	if !s.owner {
		return nil
	}
	return s.token.Close()
}

func checkDigest(digest []byte, opts crypto.SignerOpts) error {
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return errors.New("RSA-PSS is not supported: Maskinporten grants use PKCS#1 v1.5 (RS256, RS384, RS512)")
	}
	hash := opts.HashFunc()
	switch hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return fmt.Errorf("hash %v is not supported: use SHA-256, SHA-384 or SHA-512 (RS256, RS384, RS512)", hash)
	}
	if len(digest) != hash.Size() {
		return fmt.Errorf("digest is %d bytes; a %v digest is %d", len(digest), hash, hash.Size())
	}
	return nil
}

func samePublicKey(a, b *rsa.PublicKey) bool {
	return a.E == b.E && a.N != nil && b.N != nil && bytes.Equal(a.N.Bytes(), b.N.Bytes())
}
