package mpsim

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"
)

// trustedChains remembers the x5c chains found to lead to a trust root,
// as a server that sees the same enterprise certificate on every grant
// would, so that a grant with a known chain costs the checks of time
// alone: parsing the certificates and verifying their signatures was
// most of the simulator's cost of a token after its own signature. Trust
// does not change with time for a chain and the fixed roots; validity
// does, and is checked on every grant. Only chains that passed every
// check are remembered; any other takes the whole path, with its own
// refusal.
type trustedChains struct {
	mu     sync.Mutex
	chains map[[sha256.Size]byte]trustedChain
}

type trustedChain struct {
	certs []*x509.Certificate // x5c, leaf first
	root  *x509.Certificate   // the root the chain was verified to
}

// maxTrustedChains bounds what a flood of distinct chains can make the
// simulator keep: past it, the memory starts again.
const maxTrustedChains = 256

// chainID names a chain by its x5c strings, as sent.
func chainID(x5c []string) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range x5c {
		h.Write([]byte(s))
		h.Write([]byte{0}) // not base64: the strings cannot run together
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// valid returns the leaf of the trusted chain id when every certificate
// of it, and its root, is valid at now.
func (t *trustedChains) valid(id [sha256.Size]byte, now time.Time) (*x509.Certificate, bool) {
	t.mu.Lock()
	c, ok := t.chains[id]
	t.mu.Unlock()
	if !ok {
		return nil, false
	}
	validAt := func(cert *x509.Certificate) bool { return !now.Before(cert.NotBefore) && !now.After(cert.NotAfter) }
	if !validAt(c.root) {
		return nil, false // the whole path says which, and how
	}
	for _, cert := range c.certs {
		if !validAt(cert) {
			return nil, false
		}
	}
	return c.certs[0], true
}

func (t *trustedChains) add(id [sha256.Size]byte, certs []*x509.Certificate, root *x509.Certificate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.chains == nil || len(t.chains) >= maxTrustedChains {
		t.chains = map[[sha256.Size]byte]trustedChain{}
	}
	t.chains[id] = trustedChain{certs: certs, root: root}
}
