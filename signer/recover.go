package signer

import (
	"crypto/rsa"
	"fmt"
	"math/rand/v2"
	"time"
)

// lose retires h after the token answered err, and starts reconnecting.
// Only the first caller to report a given handle does anything: many
// concurrent Signs fail together when a token goes away.
func (s *Signer) lose(h *handle, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live != h || s.closed {
		return
	}
	s.live = nil
	s.outage = outage{since: time.Now(), cause: err}
	// Close before reconnecting: crypto11 finalises the module only when its
	// last context closes, and some tokens (SoftHSM2 among them) come back
	// only after the module is finalised and initialised again. No Sign
	// holds h now: they hold the read lock while using it.
	h.close()
	s.cfg.Logger.Warn("HSM token lost; reconnecting",
		"token", s.cfg.TokenLabel, "key", describeKey(&s.cfg), "error", err.Error())
	s.done.Add(1)
	go s.reconnect()
}

// reconnect re-opens the token until it succeeds or the Signer is closed.
// The first attempt is immediate: a closed session is back in milliseconds.
func (s *Signer) reconnect() {
	defer s.done.Done()
	wait := s.cfg.Backoff.Initial
	for attempt := 1; ; attempt++ {
		h, err := s.reopen()
		s.mu.Lock()
		if err == nil {
			if s.closed {
				s.mu.Unlock()
				h.close()
				return
			}
			lost := time.Since(s.outage.since)
			s.live, s.outage = h, outage{}
			s.mu.Unlock()
			s.reconnects.Add(1)
			s.cfg.Logger.Info("HSM token back", "token", s.cfg.TokenLabel, "key", describeKey(&s.cfg),
				"attempts", attempt, "outage", lost.Round(time.Millisecond).String())
			return
		}
		s.outage.attempts, s.outage.cause = attempt, err
		s.mu.Unlock()
		s.cfg.Logger.Warn("HSM reconnection failed", "token", s.cfg.TokenLabel, "attempt", attempt, "error", err.Error())

		// Full jitter keeps several daemons on one network HSM from
		// reconnecting in lockstep.
		timer := time.NewTimer(rand.N(wait) + time.Millisecond)
		select {
		case <-s.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		wait = min(2*wait, s.cfg.Backoff.Max)
	}
}

// reopen opens a new handle and checks it reaches the same key: a token
// that came back with another key under the label must not be used.
func (s *Signer) reopen() (*handle, error) {
	h, err := openHandle(&s.cfg)
	if err != nil {
		return nil, err
	}
	public, ok := h.key.Public().(*rsa.PublicKey)
	if !ok {
		h.close()
		return nil, fmt.Errorf("after reconnecting, key %s is a %T, not the RSA key of the certificate", describeKey(&s.cfg), h.key.Public())
	}
	if err := checkMatches(s.chain[0], public); err != nil {
		h.close()
		return nil, fmt.Errorf("after reconnecting, key %s is another key than at start: %w", describeKey(&s.cfg), err)
	}
	return h, nil
}
