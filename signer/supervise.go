package signer

import (
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/portvakt/portvakt/internal/p11"
)

// supervise runs for the life of the Token: while the token is up it
// probes it every ProbeInterval; while it is away it reconnects, first at
// once (a closed session is back in milliseconds), then with back-off
// capped at ProbeInterval; after the token refused the PIN it waits for
// Close.
func (t *Token) supervise() {
	defer close(t.done)
	probe := time.NewTicker(t.cfg.ProbeInterval)
	defer probe.Stop()
	var cap time.Duration
	for {
		t.mu.RLock()
		state := t.state
		t.mu.RUnlock()
		switch state {
		case stateUp:
			cap = 0
			select {
			case <-t.stop:
				return
			case <-t.wake:
			case <-probe.C:
				t.probe()
			}
		case stateAway:
			t.mod.reconnect(t)
			t.mu.RLock()
			away := t.state == stateAway
			t.mu.RUnlock()
			if !away {
				continue
			}
			var wait time.Duration
			wait, cap = t.cfg.Backoff.next(cap)
			timer := time.NewTimer(wait)
			select {
			case <-t.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
		default: // login refused, or closed
			<-t.stop
			return
		}
	}
}

// probe asks the token, through a pooled session, for an attribute of each
// of its keys: a cheap call that proves the session, the login and the key
// handles are alive, which is what the next signature needs. A busy token
// is not an absent one: only a Gone answer counts.
func (t *Token) probe() {
	t.mu.RLock()
	c := t.conn
	var lost error
	if c != nil {
		for _, key := range c.keys {
			if _, err := c.ctx.GetAttribute(key, crypto11.CkaSign); err != nil && p11.Classify(err) == p11.Gone {
				lost = err
				break
			}
		}
		if len(c.keys) == 0 {
			// No key to ask about: ask for randomness instead, which needs a
			// live session too.
			if r, err := c.ctx.NewRandomReader(); err == nil {
				var b [1]byte
				if _, err := r.Read(b[:]); err != nil && p11.Classify(err) == p11.Gone {
					lost = err
				}
			}
		}
	}
	t.mu.RUnlock()
	if lost != nil {
		t.cfg.Logger.Warn("HSM probe: the token does not answer", "hsm", t.cfg.Name, "token", t.cfg.TokenLabel, "error", lost.Error())
		t.lose(c, lost)
	}
}

// attempt tries once to open the token again with all its keys, and
// reports what it found and whether the token's state changed. It is
// called by the module, which serialises attempts and restarts and tells
// OnChange once no lock is held any more.
func (t *Token) attempt() (class p11.Class, changed bool, err error) {
	t.mu.RLock()
	if t.state != stateAway {
		t.mu.RUnlock()
		return p11.Request, false, nil
	}
	keys := append([]*Signer(nil), t.keys...) // keys are added only while up
	t.mu.RUnlock()

	conn, err := t.dial(keys)
	t.mu.Lock()
	if t.state != stateAway { // closed meanwhile
		t.mu.Unlock()
		if conn != nil {
			conn.close()
		}
		return p11.Request, false, nil
	}
	if err == nil {
		lost := time.Since(t.outage.since)
		attempts := t.outage.attempts + 1
		t.conn, t.state, t.outage = conn, stateUp, outage{}
		t.mu.Unlock()
		t.reconnects.Add(1)
		t.cfg.Logger.Info("HSM token back", "hsm", t.cfg.Name, "token", t.cfg.TokenLabel, "keys", len(keys),
			"attempts", attempts, "outage", lost.Round(time.Millisecond).String())
		return p11.Request, true, nil
	}
	class = p11.Classify(err)
	t.outage.attempts++
	t.outage.cause = err
	attempts := t.outage.attempts
	if class == p11.LoginRefused {
		t.state = stateLoginRefused
	}
	t.mu.Unlock()
	if class == p11.LoginRefused {
		t.cfg.Logger.Error("HSM token refused the PIN on reconnecting; not retrying, so as not to lock the PIN: fix the PIN and restart",
			"hsm", t.cfg.Name, "token", t.cfg.TokenLabel, "error", err.Error())
	} else {
		t.cfg.Logger.Warn("HSM reconnection failed", "hsm", t.cfg.Name, "token", t.cfg.TokenLabel,
			"attempt", attempts, "class", class.String(), "error", err.Error())
	}
	return class, class == p11.LoginRefused, err
}
