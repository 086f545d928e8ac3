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
	failures := 0
	for {
		t.mu.RLock()
		state := t.state
		t.mu.RUnlock()
		switch state {
		case stateUp:
			failures = 0
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
			failures++
			timer := time.NewTimer(t.cfg.Backoff.Delay(failures))
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
//
// A network HSM cut off without a reset answers nothing at all, and some
// PKCS#11 clients (p11-kit's) have no timeout, so a call can block until
// the network returns. A probe unanswered after twice the session wait
// marks the token stalled (once would catch a probe merely waiting for a
// session of a busy pool, which gives up after the session wait): Health
// reports it and Sign fails at once instead of queueing behind calls that
// may never return. The mark goes when the probe is answered.
func (t *Token) probe() {
	answer := make(chan probeAnswer, 1)
	go func() { answer <- t.ask() }()
	var a probeAnswer
	select {
	case a = <-answer:
	case <-time.After(2 * t.cfg.SessionWait):
		t.stalled.Store(time.Now().UnixNano())
		t.cfg.Logger.Warn("HSM token does not answer; signatures fail at once until it does",
			"hsm", t.cfg.Name, "token", t.cfg.TokenLabel, "waited", (2 * t.cfg.SessionWait).String())
		t.changed()
		select {
		case a = <-answer:
		case <-t.stop:
			return // the call may never return; Close must not wait for it here
		}
		t.stalled.Store(0)
		t.cfg.Logger.Info("HSM token answers again", "hsm", t.cfg.Name, "token", t.cfg.TokenLabel)
		t.changed()
	}
	if a.lost != nil {
		t.cfg.Logger.Warn("HSM probe: the token does not answer", "hsm", t.cfg.Name, "token", t.cfg.TokenLabel, "error", a.lost.Error())
		t.lose(a.conn, a.lost)
	}
}

// probeAnswer is what one probe found: the connection asked, and the
// error that shows it lost, if any.
type probeAnswer struct {
	conn *connection
	lost error
}

func (t *Token) ask() probeAnswer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c := t.conn
	if c == nil {
		return probeAnswer{}
	}
	for _, key := range c.keys {
		if key == nil { // deleted
			continue
		}
		if _, err := c.ctx.GetAttribute(key, crypto11.CkaSign); err != nil && p11.Classify(err) == p11.Gone {
			return probeAnswer{c, err}
		}
	}
	return probeAnswer{c, nil} // a token with no key yet has nothing to lose
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
