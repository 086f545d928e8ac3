// Package signer keeps the enterprise certificate's private key in a
// PKCS#11 token and signs with it there.
//
// A Signer is a crypto.Signer bound to one key and its certificate chain. It
// checks at Open that the certificate belongs to the key, signs RSA
// PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512 (the RS256, RS384 and RS512
// of JWS), is safe for concurrent use with a bounded pool of PKCS#11
// sessions, and recovers by itself when the token goes away and comes back.
package signer

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/secret"
)

// Config says which token, key and certificate a Signer uses.
type Config struct {
	// Module is the path of the PKCS#11 library.
	Module string
	// TokenLabel selects the token. Slot numbers are never used: they move.
	TokenLabel string
	// PIN logs in to the token as its user.
	PIN secret.Value
	// KeyLabel and KeyID (CKA_LABEL, CKA_ID) select the private key; at least
	// one must be set, and together they must match exactly one key.
	KeyLabel string
	KeyID    []byte
	// CertificateFile, when set, is a PEM file holding the key's certificate
	// first and then its chain. When empty the certificate and chain are read
	// from the token's certificate objects.
	CertificateFile string
	// MaxSessions bounds the PKCS#11 sessions the Signer opens (one of them
	// is kept idle to hold the login). Default 4.
	MaxSessions int
	// SessionWait bounds how long Sign waits for a free session when all are
	// busy. Default 5 s.
	SessionWait time.Duration
	// Backoff paces reconnection attempts after the token went away.
	Backoff Backoff
	// Logger receives reconnection events. Default slog.Default().
	Logger *slog.Logger
}

// Backoff is an exponential back-off with full jitter.
type Backoff struct {
	// Initial is the wait before the second attempt (the first is at once).
	// Default 100 ms.
	Initial time.Duration
	// Max caps the wait. Default 30 s.
	Max time.Duration
}

const (
	defaultMaxSessions = 4
	defaultSessionWait = 5 * time.Second
	defaultBackoffMin  = 100 * time.Millisecond
	defaultBackoffMax  = 30 * time.Second
	// minRSABits is the smallest key Portvakt signs with; CAs issue no
	// eSeal for less.
	minRSABits = 2048
)

func (c *Config) setDefaults() {
	if c.MaxSessions == 0 {
		c.MaxSessions = defaultMaxSessions
	}
	if c.SessionWait == 0 {
		c.SessionWait = defaultSessionWait
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = defaultBackoffMin
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = defaultBackoffMax
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var problems []string
	if c.Module == "" {
		problems = append(problems, "the PKCS#11 module path is empty")
	}
	if c.TokenLabel == "" {
		problems = append(problems, "the token label is empty")
	}
	if c.PIN.IsZero() {
		problems = append(problems, "no PIN was given")
	}
	if c.KeyLabel == "" && len(c.KeyID) == 0 {
		problems = append(problems, "neither a key label nor a key id was given")
	}
	if c.MaxSessions < 2 {
		problems = append(problems, fmt.Sprintf("max sessions is %d; it must be at least 2 (one holds the login)", c.MaxSessions))
	}
	if c.Backoff.Initial < 0 || c.Backoff.Max < c.Backoff.Initial {
		problems = append(problems, "the reconnect back-off must have 0 < initial <= max")
	}
	if len(problems) > 0 {
		return fmt.Errorf("signer configuration: %s", joinProblems(problems))
	}
	return nil
}

// Signer signs with a private key held in a PKCS#11 token. It implements
// crypto.Signer.
type Signer struct {
	cfg    Config
	public *rsa.PublicKey
	chain  []*x509.Certificate

	mu       sync.RWMutex
	live     *handle // nil while the token is away
	outage   outage  // why live is nil, while it is
	closed   bool
	stopOnce sync.Once
	stop     chan struct{}
	done     sync.WaitGroup

	reconnects atomic.Uint64
}

// handle is one crypto11 context and the key found through it. A handle is
// never repaired: when its token goes away it is closed and replaced.
type handle struct {
	ctx *crypto11.Context
	key crypto11.Signer
}

// outage describes the current loss of the token.
type outage struct {
	since    time.Time
	attempts int
	cause    error
}

// Open logs in to the token, finds the key and its certificate chain, and
// checks that the certificate's public key is the key's. Any failure is
// returned with what to fix; Open does not retry.
func Open(cfg Config) (*Signer, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h, err := openHandle(&cfg)
	if err != nil {
		return nil, err
	}
	public, ok := h.key.Public().(*rsa.PublicKey)
	if !ok {
		h.close()
		return nil, fmt.Errorf("key %s is a %T; Maskinporten grants are signed with RSA keys", describeKey(&cfg), h.key.Public())
	}
	if bits := public.N.BitLen(); bits < minRSABits {
		h.close()
		return nil, fmt.Errorf("key %s has %d bits; at least %d are required", describeKey(&cfg), bits, minRSABits)
	}
	chain, err := loadChain(&cfg, public)
	if err != nil {
		h.close()
		return nil, err
	}
	return &Signer{cfg: cfg, public: public, chain: chain, live: h, stop: make(chan struct{})}, nil
}

// openHandle configures a new crypto11 context and finds exactly one key.
func openHandle(cfg *Config) (*handle, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:            cfg.Module,
		TokenLabel:      cfg.TokenLabel,
		Pin:             cfg.PIN.Reveal(),
		MaxSessions:     cfg.MaxSessions,
		PoolWaitTimeout: cfg.SessionWait,
	})
	if err != nil {
		return nil, p11.ExplainOpenError(cfg.Module, cfg.TokenLabel, err)
	}
	keys, err := ctx.FindKeyPairs(cfg.KeyID, []byte(cfg.KeyLabel))
	if err != nil {
		_ = ctx.Close()
		return nil, fmt.Errorf("finding key %s on token %q: %w", describeKey(cfg), cfg.TokenLabel, err)
	}
	switch len(keys) {
	case 0:
		_ = ctx.Close()
		return nil, fmt.Errorf("%w: no private key %s on token %q (`portvakt hsm list` shows the keys there)", ErrKeyNotFound, describeKey(cfg), cfg.TokenLabel)
	case 1:
		return &handle{ctx: ctx, key: keys[0]}, nil
	default:
		_ = ctx.Close()
		return nil, fmt.Errorf("%d private keys match %s on token %q; give both the label and the id to select one", len(keys), describeKey(cfg), cfg.TokenLabel)
	}
}

func (h *handle) close() { _ = h.ctx.Close() }

// Public returns the key's public half.
func (s *Signer) Public() crypto.PublicKey { return s.public }

// Certificate returns the key's certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.chain[0] }

// Chain returns the certificate first, then the certificates that issued
// it, as far as they were found. The slice is the caller's to keep.
func (s *Signer) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), s.chain...) }

// KeyLabel returns the label the key was selected by (may be empty).
func (s *Signer) KeyLabel() string { return s.cfg.KeyLabel }

// Reconnects counts how often the Signer re-opened its token.
func (s *Signer) Reconnects() uint64 { return s.reconnects.Load() }

// Sign signs digest with RSA PKCS#1 v1.5. opts must be crypto.SHA256,
// crypto.SHA384 or crypto.SHA512 (RS256, RS384, RS512); PSS is refused.
// While the token is away Sign fails at once with an error wrapping
// ErrUnavailable, and a background goroutine reconnects.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkDigest(digest, opts); err != nil {
		return nil, err
	}
	s.mu.RLock()
	h := s.live
	if h == nil {
		err := s.unavailableLocked()
		s.mu.RUnlock()
		return nil, err
	}
	// crypto11 ignores the rand argument for PKCS#1 v1.5: the token pads.
	sig, err := h.key.Sign(nil, digest, opts.HashFunc())
	s.mu.RUnlock()
	if err == nil {
		return sig, nil
	}
	if p11.IsTokenGone(err) {
		s.lose(h, err)
		return nil, fmt.Errorf("%w: signing with key %s failed, reconnecting: %w", ErrUnavailable, describeKey(&s.cfg), err)
	}
	if isPoolTimeout(err) {
		return nil, fmt.Errorf("%w: all %d HSM sessions stayed busy for %s", ErrBusy, s.cfg.MaxSessions-1, s.cfg.SessionWait)
	}
	return nil, fmt.Errorf("signing with key %s: %w", describeKey(&s.cfg), err)
}

// Health returns nil while the token is reachable, else an error wrapping
// ErrUnavailable that says since when and why.
func (s *Signer) Health() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.live != nil {
		return nil
	}
	return s.unavailableLocked()
}

// Close stops any reconnection, waits for it, and releases the token's
// sessions. Sign fails after Close.
func (s *Signer) Close() error {
	// Mark closed first, under the lock, so that lose starts no new
	// reconnection while we wait for a running one.
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	s.done.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live != nil {
		s.live.close()
		s.live = nil
	}
	return nil
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

func describeKey(cfg *Config) string {
	switch {
	case cfg.KeyLabel != "" && len(cfg.KeyID) > 0:
		return fmt.Sprintf("label %q id %x", cfg.KeyLabel, cfg.KeyID)
	case len(cfg.KeyID) > 0:
		return fmt.Sprintf("id %x", cfg.KeyID)
	default:
		return fmt.Sprintf("label %q", cfg.KeyLabel)
	}
}

func samePublicKey(a, b *rsa.PublicKey) bool {
	return a.E == b.E && bytes.Equal(a.N.Bytes(), b.N.Bytes())
}
