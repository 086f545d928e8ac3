package mpsim

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/portvakt/portvakt/orgno"
)

// jtiRetention is how long past its grant's exp a jti stays burned.
// Replaying the same grant fails on exp anyway; keeping the jti longer also
// catches a client that reuses a jti in a new grant, which Maskinporten
// forbids and a strict simulator should notice.
const jtiRetention = time.Hour

// pruneInterval spaces out sweeps of the burned jtis, so the sweep's cost
// is spread over many requests.
const pruneInterval = time.Minute

// authorize applies checks 11 to 13 to an authenticated grant: burn the
// jti, then check the scopes and any delegation or system user. It fills
// in g.consumer, g.delegated and g.issuedFor.
func (s *Server) authorize(g *grant, now time.Time) *refusal {
	// 11. The jti is burned before the scope checks, so a retry of a grant
	// refused for its scope is refused as reused, as with Maskinporten.
	if !s.burn(g.jti, g.exp, now) {
		return invalidGrant(CodeGrantReused, "Grant is used before: jti %q was accepted earlier; use a fresh jti for every request, retries included", g.jti)
	}

	// 12. Scopes registered for the client.
	var notGranted []string
	for _, sc := range g.scopes {
		if !g.client.scopes[sc] {
			notGranted = append(notGranted, sc)
		}
	}
	if len(notGranted) > 0 {
		return &refusal{http.StatusBadRequest, "invalid_scope", CodeScopeNotGranted,
			fmt.Sprintf("Invalid scope: client %q has not been granted %s", g.client.ID, strings.Join(notGranted, " "))}
	}

	// 13. A system user (authorization_details), looked up as Altinn
	// does. The token's consumer stays the client's own organisation:
	// in Altinn's token example consumer differs from systemuser_org,
	// and the customer is named in authorization_details instead; no
	// supplier or delegation_source, as this is not API delegation.
	if g.systemUser != nil {
		u, ref := s.findSystemUser(g.client.ID, g.systemUser)
		if ref != nil {
			return ref
		}
		g.consumer, g.issuedFor = g.client.OrgNumber, &u
		return nil
	}

	// 13. Or delegation (consumer_org); a grant never has both.
	if g.consumerOrg == nil {
		g.consumer = g.client.OrgNumber
		return nil
	}
	consumer, err := orgno.Parse(*g.consumerOrg)
	if err != nil {
		return badAssertion("Claim consumer_org %q is not a valid organisation number", *g.consumerOrg)
	}
	if consumer == g.client.OrgNumber {
		return badAssertion("Claim consumer_org %s is the client's own organisation; leave consumer_org out to ask on your own behalf", consumer)
	}
	// MP-250 when the simulator knows the consumer's own access
	// (Config.ConsumerAccess) and it lacks a scope; otherwise every
	// missing delegation is MP-251.
	if own, known := s.access[consumer]; known {
		var lacking []string
		for _, sc := range g.scopes {
			if !own[sc] {
				lacking = append(lacking, sc)
			}
		}
		if len(lacking) > 0 {
			return &refusal{http.StatusForbidden, "forbidden", CodeConsumerNotGranted,
				fmt.Sprintf("Consumer %s has not been granted access to the scope %s", consumer, strings.Join(lacking, " "))}
		}
	}
	byScope := s.delegations[consumer]
	var undelegated []string
	for _, sc := range g.scopes {
		if !byScope[sc][g.client.ID] {
			undelegated = append(undelegated, sc)
		}
	}
	if len(undelegated) > 0 {
		return &refusal{http.StatusForbidden, "forbidden", CodeNotDelegated,
			fmt.Sprintf("Consumer %s has not delegated the scope %s to the supplier %q", consumer, strings.Join(undelegated, " "), g.client.ID)}
	}
	g.consumer, g.delegated = consumer, true
	return nil
}

// burn records jti as used and reports whether it was unused.
func (s *Server) burn(jti string, exp, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastPrune) >= pruneInterval {
		for j, e := range s.burned {
			if now.After(e.Add(jtiRetention)) {
				delete(s.burned, j)
			}
		}
		s.lastPrune = now
	}
	if _, used := s.burned[jti]; used {
		return false
	}
	s.burned[jti] = exp
	return true
}
