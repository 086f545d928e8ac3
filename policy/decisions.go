package policy

import (
	"strings"
	"sync"
	"sync/atomic"
)

// maxRememberedDecisions bounds what a policy remembers. Only allowed
// decisions are remembered, so what fills it is what the policy allows
// its own clients to ask, not what any caller sends; the bound holds even
// for a policy that allows very many shapes of request.
const maxRememberedDecisions = 4096

// decisions remembers a policy's allowed decisions by the shape of the
// request (the identity a client claims, environment, scopes in the
// order asked, consumer and system user), so that the same request from
// the same caller is decided with map lookups and no allocation: on the
// cached token path most calls are repeats. A Policy is never changed,
// so neither are its decisions; a reload makes a new Policy with nothing
// remembered, and the next call is decided by the new policy.
//
// Reads load a map that is never written after it is published; a new
// decision copies it (rare: once per shape of request per policy).
type decisions struct {
	mu sync.Mutex // serialises copies
	m  atomic.Pointer[map[decisionKey]Decision]
}

// decisionKey is a request's shape. Scopes are joined by NUL, which no
// scope holds (a request with one is not remembered: see keyOf).
type decisionKey struct {
	identity, environment, scopes, consumerOrg, systemUserOrg string
}

// keyOf is the shape of r from a caller recognised by identity, and
// false for a request whose scopes cannot be joined unambiguously. One
// scope, the usual request, costs no allocation.
func keyOf(identity string, r Request) (decisionKey, bool) {
	k := decisionKey{identity: identity, environment: r.Environment, consumerOrg: r.ConsumerOrg, systemUserOrg: r.SystemUserOrg}
	for _, s := range r.Scopes {
		if strings.IndexByte(s, 0) >= 0 {
			return decisionKey{}, false
		}
	}
	if len(r.Scopes) == 1 {
		k.scopes = r.Scopes[0]
	} else {
		k.scopes = strings.Join(r.Scopes, "\x00")
	}
	return k, true
}

func (ds *decisions) get(k decisionKey) (Decision, bool) {
	m := ds.m.Load()
	if m == nil {
		return Decision{}, false
	}
	d, ok := (*m)[k]
	return d, ok
}

// put remembers an allowed decision, unless the policy remembers as many
// as it may already (then each such request is decided afresh).
func (ds *decisions) put(k decisionKey, d Decision) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	old := ds.m.Load()
	var n int
	if old != nil {
		n = len(*old)
		if _, ok := (*old)[k]; ok || n >= maxRememberedDecisions {
			return
		}
	}
	m := make(map[decisionKey]Decision, n+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[k] = d
	ds.m.Store(&m)
}
