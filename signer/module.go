package signer

import (
	"slices"
	"sync"

	"github.com/portvakt/portvakt/internal/p11"
)

// module is a PKCS#11 library in use by one or more Tokens. A library is
// initialised once per process, so its tokens share its fate: some modules
// see a token that came back, or a network HSM that restarted, only after
// they are finalised and initialised again (SoftHSM2 rescans its token
// directory only then), and crypto11 finalises a module only when the last
// context on it closes.
type module struct {
	path string
	// mu serialises reconnection attempts and restarts of the module. It is
	// taken before any Token.mu, never after.
	mu sync.Mutex
	// tokens use the module; guarded by registry's lock.
	tokens []*Token
}

// registry holds the modules in use, by path.
var registry = struct {
	sync.Mutex
	modules map[string]*module
}{modules: map[string]*module{}}

// join records that t uses the module at path.
func join(path string, t *Token) *module {
	registry.Lock()
	defer registry.Unlock()
	m := registry.modules[path]
	if m == nil {
		m = &module{path: path}
		registry.modules[path] = m
	}
	m.tokens = append(m.tokens, t)
	return m
}

// leave records that t no longer uses m.
func (m *module) leave(t *Token) {
	registry.Lock()
	defer registry.Unlock()
	m.tokens = slices.DeleteFunc(m.tokens, func(o *Token) bool { return o == t })
	if len(m.tokens) == 0 {
		delete(registry.modules, m.path)
	}
}

// others are the module's tokens other than t.
func (m *module) others(t *Token) []*Token {
	registry.Lock()
	defer registry.Unlock()
	return slices.DeleteFunc(slices.Clone(m.tokens), func(o *Token) bool { return o == t })
}

// reconnect makes one attempt to bring t back. When the token is not
// found and other tokens of the module still hold contexts, the module
// itself may be what needs a fresh start: every context on it is closed
// (so that crypto11 finalises it) and opened again, t's included. The
// other tokens' signatures in flight finish first, and their callers wait
// for the restart rather than fail; a token that does not come back from
// the restart goes into recovery of its own.
func (m *module) reconnect(t *Token) {
	// OnChange reads the tokens' health: call it only once every lock
	// taken here is released.
	var changed []*Token
	defer func() {
		for _, c := range changed {
			c.changed()
		}
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	class, tChanged, err := t.attempt()
	if tChanged {
		changed = append(changed, t)
	}
	if err == nil || class != p11.Gone {
		return
	}
	var live []*Token
	for _, o := range m.others(t) {
		o.mu.Lock()
		if o.conn != nil {
			live = append(live, o)
			continue
		}
		o.mu.Unlock()
	}
	if len(live) == 0 {
		return // t's attempt already initialised the module afresh
	}
	for _, o := range live {
		o.conn.close()
		o.conn = nil
	}
	t.cfg.Logger.Info("restarting the PKCS#11 module to find a lost token again",
		"module", m.path, "token", t.cfg.TokenLabel, "other_tokens", len(live))
	if _, tChanged, _ := t.attempt(); tChanged {
		changed = append(changed, t)
	}
	for _, o := range live {
		conn, err := o.dial(o.keys)
		if err != nil {
			o.markAwayLocked(err)
			changed = append(changed, o)
			o.cfg.Logger.Warn("HSM token lost in a module restart; reconnecting", "hsm", o.cfg.Name, "token", o.cfg.TokenLabel, "error", err.Error())
		} else {
			o.conn = conn
		}
		o.mu.Unlock()
	}
}
