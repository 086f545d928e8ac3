package mpsim

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portvakt/portvakt/selfservice"
)

// Registered keys, as Digdir's self-service API keeps them: each
// integration has one set of at most MaxRegisteredKeys public keys,
// replaced whole by a POST or PUT of /clients/{client_id}/jwks. A key
// is accepted in grants only KeyActivationDelay after it was first
// registered (Maskinporten takes up to a couple of minutes) and until
// RegisteredKeyLifetime after that (at most a year); a kid is unique
// across every integration. Keys of Config.Clients are fixtures:
// accepted from the start, never expiring.

// MaxRegisteredKeys is how many keys an integration's set may hold.
const MaxRegisteredKeys = 5

// DefaultRegisteredKeyLifetime is how long a registered key is accepted:
// Maskinporten's year.
const DefaultRegisteredKeyLifetime = 365 * 24 * time.Hour

// registeredKey is one key of an integration's set.
type registeredKey struct {
	jwk JWK // as the API answers it, exp included
	pub *rsa.PublicKey
	// x5c is the certificate the key is pinned to, if the JWK carried one.
	x5c *x509.Certificate
	// registered is when the key was first put in the set; accepted and
	// expires follow from it. A fixture has none: accepted from the
	// start, never expiring.
	registered, accepted, expires time.Time
}

// keySet is an integration's registered keys.
type keySet struct {
	keys             []registeredKey
	created, updated time.Time
}

// registry holds every integration's set.
type registry struct {
	mu   sync.Mutex
	sets map[string]*keySet // by client id
}

// lookup finds kid among clientID's keys and says whether a grant may use
// it at now: ok false and a reason when not.
func (r *registry) lookup(clientID, kid string, now time.Time) (key *rsa.PublicKey, pinned *x509.Certificate, expired *registeredKey, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.sets[clientID]
	if set == nil {
		return nil, nil, nil, false
	}
	for i := range set.keys {
		k := &set.keys[i]
		if k.jwk.Kid != kid {
			continue
		}
		if !k.accepted.IsZero() && now.Before(k.accepted) {
			return nil, nil, nil, false // not yet known to Maskinporten's token endpoint
		}
		if !k.expires.IsZero() && !now.Before(k.expires) {
			kc := *k
			return nil, nil, &kc, false
		}
		return k.pub, k.x5c, nil, true
	}
	return nil, nil, nil, false
}

// snapshot is clientID's set as the API answers it.
func (r *registry) snapshot(clientID string) jwksDocument {
	r.mu.Lock()
	defer r.mu.Unlock()
	doc := jwksDocument{Keys: []JWK{}}
	set := r.sets[clientID]
	if set == nil {
		return doc
	}
	for _, k := range set.keys {
		doc.Keys = append(doc.Keys, k.jwk)
	}
	doc.Created, doc.LastUpdated = apiTime(set.created), apiTime(set.updated)
	return doc
}

// replace puts keys in place of clientID's set at now. A key already in
// the set (the same kid and the same public key) keeps its registration,
// so posting the set again starts no key's delay or year afresh; a kid
// another integration holds, or that this one holds for another key, is
// refused and nothing changes.
func (r *registry) replace(clientID string, keys []registeredKey, now time.Time, delay, lifetime time.Duration) (jwksDocument, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for other, set := range r.sets {
		if other == clientID {
			continue
		}
		for _, k := range set.keys {
			for _, n := range keys {
				if n.jwk.Kid == k.jwk.Kid {
					return jwksDocument{}, fmt.Errorf("kid %q is in use by another integration; every kid must be unique across Maskinporten, so choose another (a JWK thumbprint is)", n.jwk.Kid)
				}
			}
		}
	}
	set := r.sets[clientID]
	if set == nil {
		set = &keySet{created: now}
		r.sets[clientID] = set
	}
	next := make([]registeredKey, 0, len(keys))
	for _, n := range keys {
		i := slices.IndexFunc(set.keys, func(k registeredKey) bool { return k.jwk.Kid == n.jwk.Kid })
		switch {
		case i >= 0 && !set.keys[i].pub.Equal(n.pub):
			return jwksDocument{}, fmt.Errorf("kid %q is registered for another key; a new key needs a new kid", n.jwk.Kid)
		case i >= 0:
			kept := set.keys[i]
			kept.jwk.X5C, kept.x5c = n.jwk.X5C, n.x5c // a pin may be added or removed
			next = append(next, kept)
		default:
			n.registered, n.accepted, n.expires = now, now.Add(delay), now.Add(lifetime)
			n.jwk.Exp = n.expires.Unix()
			next = append(next, n)
		}
	}
	set.keys, set.updated = next, now
	doc := jwksDocument{Keys: []JWK{}, Created: apiTime(set.created), LastUpdated: apiTime(set.updated)}
	for _, k := range set.keys {
		doc.Keys = append(doc.Keys, k.jwk)
	}
	return doc, nil
}

// fixture registers Config.Clients' keys, which never expire.
func (r *registry) fixture(clientID string, keys map[string]crypto.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sets == nil {
		r.sets = map[string]*keySet{}
	}
	if len(keys) == 0 {
		return
	}
	set := &keySet{}
	for _, kid := range slices.Sorted(func(yield func(string) bool) {
		for kid := range keys {
			if !yield(kid) {
				return
			}
		}
	}) {
		pub := keys[kid].(*rsa.PublicKey) // validateClientKey
		n, e := rsaParams(pub)
		set.keys = append(set.keys, registeredKey{jwk: JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: "RS256", N: n, E: e}, pub: pub})
	}
	r.sets[clientID] = set
}

// jwksDocument is the self-service API's answer for an integration's keys.
type jwksDocument struct {
	Keys        []JWK  `json:"keys"`
	Created     string `json:"created,omitempty"`
	LastUpdated string `json:"last_updated,omitempty"`
}

func apiTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// parseKeySet reads a posted set strictly and checks what Digdir checks
// of each key: RSA of at least 2048 bits for RS256 signatures, a kid,
// unique in the set, at most MaxRegisteredKeys keys. checkPin checks a
// key's x5c, when it has one.
func parseKeySet(body []byte, checkPin func(kid string, pub *rsa.PublicKey, x5c []string) (*x509.Certificate, error)) ([]registeredKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("the body is not a JWKS ({\"keys\": [...]}): %v", err)
	}
	if dec.More() {
		return nil, errors.New("the body holds more than one JSON value")
	}
	if doc.Keys == nil {
		return nil, errors.New(`the body has no "keys" array`)
	}
	if len(doc.Keys) > MaxRegisteredKeys {
		return nil, fmt.Errorf("the set has %d keys; an integration may have at most %d, so remove keys no longer in use first", len(doc.Keys), MaxRegisteredKeys)
	}
	keys := make([]registeredKey, 0, len(doc.Keys))
	for i, raw := range doc.Keys {
		var j JWK
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("keys[%d]: %v", i, err)
		}
		k, err := parseRegisteredKey(j, checkPin)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		for _, prev := range keys {
			if prev.jwk.Kid == k.jwk.Kid {
				return nil, fmt.Errorf("keys[%d]: kid %q appears twice in the set; every key needs its own", i, k.jwk.Kid)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func parseRegisteredKey(j JWK, checkPin func(kid string, pub *rsa.PublicKey, x5c []string) (*x509.Certificate, error)) (registeredKey, error) {
	switch {
	case j.Kid == "":
		return registeredKey{}, errors.New("the key has no kid")
	case len(j.Kid) > 100 || strings.ContainsFunc(j.Kid, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return registeredKey{}, fmt.Errorf("kid %.40q: at most 100 characters, none of them spaces or control characters", j.Kid)
	case j.Kty != "RSA":
		return registeredKey{}, fmt.Errorf("kid %q: kty %q; registered keys are RSA", j.Kid, j.Kty)
	case j.Alg != "" && j.Alg != "RS256":
		return registeredKey{}, fmt.Errorf("kid %q: alg %q; registered keys sign RS256", j.Kid, j.Alg)
	case j.Use != "" && j.Use != "sig":
		return registeredKey{}, fmt.Errorf("kid %q: use %q; registered keys are for signatures (sig)", j.Kid, j.Use)
	case j.Crv != "" || j.X != "" || j.Y != "":
		return registeredKey{}, fmt.Errorf("kid %q: an RSA key has no crv, x or y", j.Kid)
	}
	// n and e read, and their size checked, as Portvakt's client reads a
	// set the API answers with.
	pub, err := selfservice.JWK{Kty: j.Kty, Kid: j.Kid, N: j.N, E: j.E}.PublicKey()
	if err != nil {
		return registeredKey{}, err
	}
	k := registeredKey{pub: pub}
	if len(j.X5C) > 0 {
		if k.x5c, err = checkPin(j.Kid, pub, j.X5C); err != nil {
			return registeredKey{}, err
		}
	}
	k.jwk = JWK{Kty: "RSA", Kid: j.Kid, Use: "sig", Alg: "RS256", N: j.N, E: j.E, X5C: j.X5C}
	return k, nil
}
