// Package tokencache keeps Maskinporten tokens until shortly before they
// expire, so that most requests cost no signature and no round trip.
//
// Concurrent callers of a missing key share one fetch (one signature, one
// POST); tokens are refreshed in the background ahead of expiry so that
// callers rarely wait; errors are remembered only for a short back-off, so
// a failing Maskinporten is not hammered but a recovered one is used at
// once; and the cache is bounded.
package tokencache

import (
	"slices"
	"strings"
)

// Key identifies tokens that are interchangeable: same environment, same
// client, same scopes (in any order), resource and consumer.
type Key struct {
	Environment string
	ClientID    string
	// Scopes is the sorted, de-duplicated scopes joined by spaces.
	Scopes      string
	Resource    string
	ConsumerOrg string
}

// NewKey normalises the scopes so that the order a caller lists them in
// does not split the cache.
func NewKey(environment, clientID string, scopes []string, resource, consumerOrg string) Key {
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	return Key{
		Environment: environment,
		ClientID:    clientID,
		Scopes:      strings.Join(sorted, " "),
		Resource:    resource,
		ConsumerOrg: consumerOrg,
	}
}

// ScopeList returns the key's scopes.
func (k Key) ScopeList() []string { return strings.Fields(k.Scopes) }

// flightKey is the key as one string, for singleflight. The fields cannot
// contain the separator: scopes, URLs and organisation numbers have no NUL.
func (k Key) flightKey() string {
	return k.Environment + "\x00" + k.ClientID + "\x00" + k.Scopes + "\x00" + k.Resource + "\x00" + k.ConsumerOrg
}
