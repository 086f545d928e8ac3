// Package tokencache keeps Maskinporten tokens until shortly before they
// expire, so that most requests cost no signature and no round trip.
//
// The cache is one state machine per key, guarded by one mutex:
//
//   - empty: no token. A caller waits for a fetch (a miss).
//   - fetching: one fetch is in flight for the key; every caller without a
//     usable token waits for that one (singleflight). A fetch is up to
//     MaxAttempts attempts of the Fetcher, within FetchTimeout.
//   - fresh: a token is held and has not been handed out since it was
//     stored. Nothing is scheduled for it, so an idle key costs nothing.
//   - refresh-scheduled: the token was handed out; a timer refreshes it at
//     its refresh point, which follows the largest min validity callers
//     asked of it. A hit past that point starts the refresh at once.
//   - refreshing: a background fetch replaces the token while it is still
//     handed out.
//   - backed-off: the last fetch failed. Callers without a usable token get
//     that error, with retry advice, and no fetch or refresh starts until
//     the back-off (growing with consecutive failures) ends.
//
// Each environment has a circuit breaker counting consecutive temporary
// failures of attempts across its keys:
//
//   - closed: attempts go.
//   - open: for a cool-down no attempt goes (retries and refreshes
//     included); callers without a usable token get ErrCircuitOpen at once,
//     and cached tokens are handed out until they expire.
//   - half-open: after the cool-down one attempt at a time (a probe) goes;
//     its success closes the breaker, its failure opens it again for a
//     longer cool-down.
//
// Close stops timers, cancels fetches and waits for the cache's
// goroutines; the cache refuses every call after it.
package tokencache

import (
	"slices"
	"strings"
)

// Key identifies tokens that are interchangeable: same environment, same
// client, same scopes (in any order), resource, and on whose behalf.
type Key struct {
	Environment string
	ClientID    string
	// Scopes is the sorted, de-duplicated scopes joined by spaces.
	Scopes      string
	Resource    string
	ConsumerOrg string
	// SystemUserOrg and SystemUserRef name the Altinn system user the
	// token is for (its customer's organisation number and the external
	// reference asked with, if any); both empty for no system user. A
	// token for one customer, or one external reference, is never handed
	// out for another.
	SystemUserOrg string
	SystemUserRef string
}

// OnBehalfOf is on whose behalf a token is asked: the zero value for the
// organisation's own, ConsumerOrg for delegation, or an Altinn system
// user (SystemUserOrg, and SystemUserRef when given).
type OnBehalfOf struct {
	ConsumerOrg   string
	SystemUserOrg string
	SystemUserRef string
}

// NewKey normalises the scopes so that the order a caller lists them in
// does not split the cache.
func NewKey(environment, clientID string, scopes []string, resource string, behalf OnBehalfOf) Key {
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	return Key{
		Environment:   environment,
		ClientID:      clientID,
		Scopes:        strings.Join(sorted, " "),
		Resource:      resource,
		ConsumerOrg:   behalf.ConsumerOrg,
		SystemUserOrg: behalf.SystemUserOrg,
		SystemUserRef: behalf.SystemUserRef,
	}
}

// ScopeList returns the key's scopes.
func (k Key) ScopeList() []string { return strings.Fields(k.Scopes) }

// flightKey is the key as one string, for singleflight. The fields cannot
// contain the separator: scopes, URLs, organisation numbers and external
// references (printable ASCII) have no NUL.
func (k Key) flightKey() string {
	return k.Environment + "\x00" + k.ClientID + "\x00" + k.Scopes + "\x00" + k.Resource + "\x00" + k.ConsumerOrg +
		"\x00" + k.SystemUserOrg + "\x00" + k.SystemUserRef
}
