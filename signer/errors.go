package signer

import (
	"errors"
	"strings"

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
	// ErrLoginRefused means the token came back from an outage and refused
	// the PIN (or has locked it); recovery has stopped. It comes wrapped
	// together with ErrUnavailable.
	ErrLoginRefused = errors.New("HSM login refused")
	// ErrClosed means Sign was called after Close.
	ErrClosed = errors.New("signer closed")
)

func isPoolTimeout(err error) bool { return errors.Is(err, pool.ErrTimeout) }

func joinProblems(problems []string) string { return strings.Join(problems, "; ") }
