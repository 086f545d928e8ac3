package signer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/thales-e-security/pool"

	"github.com/portvakt/portvakt/internal/p11"
)

var (
	// ErrUnavailable means the token cannot be used now (it went away, or is
	// being re-opened). Retrying later may succeed.
	ErrUnavailable = errors.New("HSM unavailable")
	// ErrBusy means every session was in use for longer than SessionWait.
	ErrBusy = errors.New("HSM busy")
	// ErrKeyNotFound means no private key matched the configured label or id.
	ErrKeyNotFound = errors.New("key not found")
	// ErrClosed means Sign was called after Close.
	ErrClosed = errors.New("signer closed")
)

// unavailableLocked describes why the token cannot be used; s.mu must be held.
func (s *Signer) unavailableLocked() error {
	if s.closed {
		return ErrClosed
	}
	o := s.outage
	return fmt.Errorf("%w: token %q lost %s ago, %d reconnection attempts so far; last error: %v",
		ErrUnavailable, s.cfg.TokenLabel, time.Since(o.since).Round(time.Millisecond), o.attempts, o.cause)
}

// explainConfigureError turns crypto11's terse Configure errors into ones
// that say what to fix. It never includes the PIN: crypto11 does not put it
// in errors, and neither does anything here.
func explainConfigureError(cfg *Config, err error) error {
	if _, statErr := os.Stat(cfg.Module); statErr != nil {
		return fmt.Errorf("PKCS#11 module: %w (install the HSM's PKCS#11 library, or softhsm2 for development, or correct the module path)", statErr)
	}
	switch {
	case p11.IsPINIncorrect(err):
		return fmt.Errorf("token %q refused the PIN: check the PIN file or variable: %w", cfg.TokenLabel, err)
	case p11.IsPINLocked(err):
		return fmt.Errorf("the user PIN of token %q is locked after failed logins; the security officer must reset it: %w", cfg.TokenLabel, err)
	}
	// crypto11 does not export its "token not found" error; ask the module
	// which tokens it has, so the message can list them.
	if m, openErr := p11.Open(cfg.Module); openErr == nil {
		_, slotErr := m.FindSlot(cfg.TokenLabel)
		m.Close()
		if errors.Is(slotErr, p11.ErrTokenNotFound) {
			return slotErr
		}
	}
	return fmt.Errorf("opening token %q with module %s: %w", cfg.TokenLabel, cfg.Module, err)
}

func isPoolTimeout(err error) bool { return errors.Is(err, pool.ErrTimeout) }

func joinProblems(problems []string) string { return strings.Join(problems, "; ") }
