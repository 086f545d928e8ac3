package signer

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thales-e-security/pool"
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

func isPoolTimeout(err error) bool { return errors.Is(err, pool.ErrTimeout) }

func joinProblems(problems []string) string { return strings.Join(problems, "; ") }
