package policy

import (
	"slices"

	"golang.org/x/time/rate"

	"github.com/portvakt/portvakt/syntax"
)

// Policy is a loaded, valid policy. It is never changed once loaded (its
// rate limiters aside, which are meant to change, and the decisions it
// remembers, which are its own answers), so any number of goroutines may
// use it, and a reload replaces it as a whole.
type Policy struct {
	source       string
	clients      []*client          // in file order
	byName       map[string]*client // name → client
	byIdentity   map[string]*client // identity (canonical) → client
	environments []string           // sorted, without repeats
	rules        int

	// unknownLimit is the bucket shared by every caller no client claims
	// (unknown_callers.rate_limit, or DefaultUnknownRateLimit).
	unknownLimit   RateLimit
	unknownLimiter *rate.Limiter

	decisions decisions // allowed decisions, by the request's shape
}

// client is one entry of clients: in the file.
type client struct {
	name       string
	identities []string
	rules      []*rule
	limit      RateLimit     // zero: no limit
	limiter    *rate.Limiter // nil when there is no limit
}

// rule is one entry of a client's rules:.
type rule struct {
	pos          string // FILE:LINE, for decisions and Grants
	environments []string
	scopes       []string
	consumerOrgs []string // empty: the client asks on its own behalf
	// systemUsers are the Altinn system users' customers the rule allows
	// (never together with consumerOrgs); a rule with them allows only
	// system-user requests.
	systemUsers []string
}

// allows reports whether the rule allows the scope in env on the client's
// own behalf (consumerOrg "") or on behalf of consumerOrg, as no system
// user.
// allows reports whether the rule allows the scope in env for a request
// on behalf of consumerOrg, or for the system user of the customer
// systemUserOrg (at most one of them is set; neither: the client's own).
func (r *rule) allows(scope, env, consumerOrg, systemUserOrg string) bool {
	if !slices.Contains(r.environments, env) || !slices.Contains(r.scopes, scope) {
		return false
	}
	switch {
	case systemUserOrg != "":
		return slices.Contains(r.systemUsers, systemUserOrg)
	case consumerOrg != "":
		return slices.Contains(r.consumerOrgs, consumerOrg)
	}
	return len(r.consumerOrgs) == 0 && len(r.systemUsers) == 0
}

// Grant is one rule of a client: what it may ask for, for WhoAmI and for
// people reading the policy through the daemon.
type Grant struct {
	Environments []string
	Scopes       []string
	// ConsumerOrgs are the organisations the client may ask on behalf of,
	// for the (delegated) scopes of this rule; empty when it asks for
	// itself.
	ConsumerOrgs []string
	// SystemUsers are the Altinn system users' customers the client may
	// ask for, for the scopes of this rule; empty when the rule allows no
	// system user.
	SystemUsers []string
	// Rule is where the rule is, as FILE:LINE.
	Rule string
}

// Source is the file name the policy was loaded from, as used in its
// FILE:LINE positions.
func (p *Policy) Source() string { return p.source }

// Clients returns the clients' names in the order of the file.
func (p *Policy) Clients() []string {
	names := make([]string, len(p.clients))
	for i, c := range p.clients {
		names[i] = c.name
	}
	return names
}

// RuleCount is the number of rules of all clients together.
func (p *Policy) RuleCount() int { return p.rules }

// Grants returns what the named client may ask for, one Grant per rule in
// the order of the file; nil for a client the policy does not know. The
// slices are copies: the caller may keep and change them.
func (p *Policy) Grants(clientName string) []Grant {
	c := p.byName[clientName]
	if c == nil {
		return nil
	}
	grants := make([]Grant, len(c.rules))
	for i, r := range c.rules {
		grants[i] = Grant{
			Environments: slices.Clone(r.environments),
			Scopes:       slices.Clone(r.scopes),
			ConsumerOrgs: slices.Clone(r.consumerOrgs),
			SystemUsers:  slices.Clone(r.systemUsers),
			Rule:         r.pos,
		}
	}
	return grants
}

// Environments returns every environment any rule names, sorted, so the
// daemon can check at start-up that it has each of them configured: a rule
// for an environment the daemon does not know is most likely a typo.
func (p *Policy) Environments() []string { return slices.Clone(p.environments) }

// ClientOf tells which client the caller is: the first of the caller's
// identities, in the caller's order, that a client claims. A Unix peer's
// identities come uid first (see UnixPeerIdentities) because a uid is one
// account while a primary gid may be shared by many.
func (p *Policy) ClientOf(identities []string) (clientName string, identity string, ok bool) {
	c, id := p.clientOf(identities)
	if c == nil {
		return "", "", false
	}
	return c.name, id, true
}

func (p *Policy) clientOf(identities []string) (*client, string) {
	for _, id := range identities {
		// An identity spelled canonically already (as certificates'
		// DNS names mostly are) is found without making its canonical
		// form, which allocates; the map's keys are canonical, so a hit
		// is the same client the canonical form would find.
		if c := p.byIdentity[id]; c != nil {
			return c, id
		}
		if c := p.byIdentity[syntax.CanonicalIdentity(id)]; c != nil {
			return c, id
		}
	}
	return nil, ""
}
