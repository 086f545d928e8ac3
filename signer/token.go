package signer

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/internal/p11"
)

// Token is one PKCS#11 token (a module and a token label) and every key
// used on it. It holds one crypto11 context, through which all its keys are
// found and used, and it owns recovery: when the token goes away all its
// keys are unavailable together, and when it is back all of them are found
// again and checked against their certificates. A probe asks the token at
// an interval whether it is still there, so an outage is seen without
// traffic and a return without waiting for a caller.
type Token struct {
	cfg TokenConfig
	mod *module

	mu     sync.RWMutex
	conn   *connection // nil while the token is away
	keys   []*Signer   // every key opened on the token; conn.keys follows it
	state  tokenState
	outage outage // why conn is nil, while it is

	// stalled is when a probe went unanswered for the session wait (Unix
	// nanoseconds), or 0. It is atomic, not under mu: the unanswered call
	// holds mu's read lock.
	stalled atomic.Int64

	wake       chan struct{} // a Sign saw the token go away
	stop       chan struct{}
	stopOnce   sync.Once
	done       chan struct{}
	reconnects atomic.Uint64
}

type tokenState int

const (
	stateUp tokenState = iota
	stateAway
	// stateLoginRefused: the token came back and refused the PIN. Trying
	// again with the same PIN would lock it, so recovery has stopped.
	stateLoginRefused
	stateClosed
)

// connection is one crypto11 context and the keys found through it. It is
// never repaired: when its token goes away it is closed and replaced.
type connection struct {
	ctx  *crypto11.Context
	keys []crypto11.Signer // keys[i] belongs to Token.keys[i]
}

// outage describes the current loss of the token.
type outage struct {
	since    time.Time
	attempts int
	cause    error
}

// OpenToken logs in to the token and starts watching it. Keys are opened
// on it with Key. Any failure is returned with what to fix; OpenToken does
// not retry.
func OpenToken(cfg TokenConfig) (*Token, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Token{cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	t.mod = join(cfg.Module, t)
	conn, err := t.dial(nil)
	if err != nil {
		t.mod.leave(t)
		return nil, err
	}
	t.conn = conn
	go t.supervise()
	return t, nil
}

// dial opens a new context on the token and finds every key in keys again,
// checking that each is still the key of its certificate: a token that came
// back with another key under a label must not be used.
func (t *Token) dial(keys []*Signer) (*connection, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:            t.cfg.Module,
		TokenLabel:      t.cfg.TokenLabel,
		Pin:             t.cfg.PIN.Reveal(),
		MaxSessions:     t.cfg.MaxSessions,
		PoolWaitTimeout: t.cfg.SessionWait,
	})
	if err != nil {
		return nil, p11.ExplainOpenError(t.cfg.Module, t.cfg.TokenLabel, err)
	}
	c := &connection{ctx: ctx}
	defer p11.LockObjects(t.cfg.Module)()
	for _, s := range keys {
		if s.deleted.Load() {
			c.keys = append(c.keys, nil) // its place kept: keys are found by index
			continue
		}
		key, err := findKey(ctx, &s.key, t.cfg.TokenLabel)
		if err == nil {
			err = s.checkSameKey(rsaPublic(key))
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("after reconnecting, key %s: %w", s.key.String(), err)
		}
		c.keys = append(c.keys, key)
	}
	return c, nil
}

// findKey finds exactly one private key matching k.
func findKey(ctx *crypto11.Context, k *KeyConfig, tokenLabel string) (crypto11.Signer, error) {
	keys, err := ctx.FindKeyPairs(k.KeyID, []byte(k.KeyLabel))
	if err != nil {
		return nil, fmt.Errorf("finding key %s on token %q: %w", k.String(), tokenLabel, err)
	}
	switch len(keys) {
	case 0:
		return nil, fmt.Errorf("%w: no private key %s on token %q (`portvakt hsm list` shows the keys there)", ErrKeyNotFound, k.String(), tokenLabel)
	case 1:
		return keys[0], nil
	default:
		return nil, fmt.Errorf("%d private keys match %s on token %q; give both the label and the id to select one", len(keys), k.String(), tokenLabel)
	}
}

func rsaPublic(key crypto11.Signer) *rsa.PublicKey {
	public, _ := key.Public().(*rsa.PublicKey)
	if public == nil {
		return &rsa.PublicKey{} // matches no certificate
	}
	return public
}

func (c *connection) close() { _ = c.ctx.Close() }

// Key finds a private key on the token and its certificate chain, checks
// that the certificate is the key's, and returns a Signer for it. The token
// must be reachable. Keys found once are found again after every outage.
func (t *Token) Key(k KeyConfig) (*Signer, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil, t.unavailableLocked()
	}
	unlock := p11.LockObjects(t.cfg.Module)
	key, err := findKey(t.conn.ctx, &k, t.cfg.TokenLabel)
	unlock()
	if err != nil {
		return nil, err
	}
	public, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key %s is a %T; Maskinporten grants are signed with RSA keys", k.String(), key.Public())
	}
	if bits := public.N.BitLen(); bits < minRSABits {
		return nil, fmt.Errorf("key %s has %d bits; at least %d are required", k.String(), bits, minRSABits)
	}
	var chain []*x509.Certificate
	if !k.NoCertificate {
		if chain, err = loadChain(&t.cfg, &k, public); err != nil {
			return nil, err
		}
	}
	if s := t.openedLocked(&k, public, chain); s != nil {
		return s, nil
	}
	s := &Signer{token: t, index: len(t.keys), key: k, public: public, chain: chain}
	t.keys = append(t.keys, s)
	t.conn.keys = append(t.conn.keys, key)
	return s, nil
}

// openedLocked is the Signer an earlier Key call made for the same key
// config, if that key is still in the HSM with the same public half and
// chain: asked again (RegisterKey is, per request), the Token hands out
// the same Signer rather than keeping one more that every reconnect must
// find again. A key deleted, or made again under the same label, or a
// chain imported since, gets a Signer of its own.
func (t *Token) openedLocked(k *KeyConfig, public *rsa.PublicKey, chain []*x509.Certificate) *Signer {
	for _, s := range t.keys {
		if s.deleted.Load() || t.conn.keys[s.index] == nil || !s.public.Equal(public) || !sameKeyConfig(&s.key, k) {
			continue
		}
		if slices.EqualFunc(s.chain, chain, (*x509.Certificate).Equal) {
			return s
		}
	}
	return nil
}

func sameKeyConfig(a, b *KeyConfig) bool {
	return a.KeyLabel == b.KeyLabel && bytes.Equal(a.KeyID, b.KeyID) && a.CertificateFile == b.CertificateFile && a.NoCertificate == b.NoCertificate
}

// Name is the token's name in logs: the configured HSM name, or its label.
func (t *Token) Name() string { return t.cfg.Name }

// Label is the token's label.
func (t *Token) Label() string { return t.cfg.TokenLabel }

// Reconnects counts how often the token was re-opened after it went away.
func (t *Token) Reconnects() uint64 { return t.reconnects.Load() }

// Health returns nil while the token is reachable, else an error wrapping
// ErrUnavailable (and ErrLoginRefused when recovery has stopped because
// the token refused the PIN) that says since when and why.
func (t *Token) Health() error {
	if err := t.stalledError(); err != nil {
		return err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.conn != nil {
		return nil
	}
	return t.unavailableLocked()
}

// Close stops the probe and any reconnection, waits for them, and releases
// the token's sessions. Its keys fail to sign after Close.
func (t *Token) Close() error {
	t.mu.Lock()
	closed := t.state == stateClosed
	t.state = stateClosed
	t.mu.Unlock()
	if closed {
		return nil
	}
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.done
	// Leave the module under its lock: a restart in progress for another
	// token of the module must not reopen this one.
	t.mod.mu.Lock()
	t.mu.Lock()
	if t.conn != nil {
		t.conn.close()
		t.conn = nil
	}
	t.mu.Unlock()
	t.mod.mu.Unlock()
	t.mod.leave(t)
	return nil
}

// lose retires c after the token answered err, and wakes the supervisor
// to reconnect. Only the first caller to report a given connection does
// anything: many concurrent Signs fail together when a token goes away.
func (t *Token) lose(c *connection, err error) {
	t.mu.Lock()
	if t.conn != c || t.state != stateUp {
		t.mu.Unlock()
		return
	}
	// Close before reconnecting: crypto11 finalises the module only when its
	// last context closes, and some tokens (SoftHSM2 among them) come back
	// only after the module is finalised and initialised again. No Sign
	// holds c now: they hold the read lock while using it.
	c.close()
	t.markAwayLocked(err)
	t.mu.Unlock()
	t.cfg.Logger.Warn("HSM token lost; reconnecting",
		"hsm", t.cfg.Name, "token", t.cfg.TokenLabel, "keys", len(c.keys), "error", err.Error())
	t.changed()
}

// markAwayLocked records that the token went away for err (its connection
// already closed) and wakes the supervisor to reconnect; t.mu must be held.
func (t *Token) markAwayLocked(err error) {
	t.conn, t.state = nil, stateAway
	t.outage = outage{since: time.Now(), cause: err}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *Token) changed() {
	if t.cfg.OnChange != nil {
		t.cfg.OnChange()
	}
}

// stalledError says since when the token has not answered, while it has
// not; else nil.
func (t *Token) stalledError() error {
	since := t.stalled.Load()
	if since == 0 {
		return nil
	}
	return fmt.Errorf("%w: token %q has not answered a probe for %s (a network HSM cut off?)",
		ErrUnavailable, t.cfg.TokenLabel, time.Since(time.Unix(0, since)).Round(time.Millisecond))
}

// unavailableLocked describes why the token cannot be used; t.mu must be held.
func (t *Token) unavailableLocked() error {
	o := t.outage
	switch t.state {
	case stateClosed:
		return ErrClosed
	case stateLoginRefused:
		return fmt.Errorf("%w: %w: token %q came back and refused the PIN; Portvakt stopped reconnecting so as not to lock it: fix the PIN and restart the daemon: %v",
			ErrUnavailable, ErrLoginRefused, t.cfg.TokenLabel, o.cause)
	}
	return fmt.Errorf("%w: token %q lost %s ago, %d reconnection attempts so far; last error: %v",
		ErrUnavailable, t.cfg.TokenLabel, time.Since(o.since).Round(time.Millisecond), o.attempts, o.cause)
}
