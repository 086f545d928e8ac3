package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Request is what a caller asks for.
type Request struct {
	// Identities are the caller's identities in the order to try them:
	// for a Unix peer UnixPeerIdentities (uid first), for an mTLS client
	// the one identity the daemon takes from its certificate.
	Identities []string
	// Environment is the daemon's name for the Maskinporten environment.
	Environment string
	// Scopes are the scopes asked for; every one must be allowed.
	Scopes []string
	// ConsumerOrg is the organisation asked on behalf of (delegation), or
	// "" when the client asks for its own organisation.
	ConsumerOrg string
	// SystemUserOrg is the customer whose Altinn system user the token is
	// for, or "" for none. A request names a ConsumerOrg or a
	// SystemUserOrg, not both.
	SystemUserOrg string
}

// Decision is the policy's answer to a Request.
type Decision struct {
	Allowed bool
	// Client is the client the caller was recognised as, "" if none.
	Client string
	// Identity is the caller's identity that the client claims.
	Identity string
	// Rules are the rules that allowed the request, as FILE:LINE, one per
	// rule in the order of the scopes they allowed; empty on a denial.
	// The policy hands the same slice to every repeat of a request: read
	// it, do not change it.
	Rules []string
	// Reason is one line for logs, the audit and `policy explain`. For a
	// denial it says what was missing. Values from the request are quoted
	// when they hold anything but printable ASCII, so that a caller cannot
	// write lines of its own into a log.
	Reason string
}

// Decide answers a request. Anything not allowed by a rule is denied.
// An allowed request is remembered by its shape (see decisions): a repeat
// is answered the same, with no allocation.
func (p *Policy) Decide(r Request) Decision {
	c, id := p.clientOf(r.Identities)
	if c == nil {
		return Decision{Reason: noClientReason(r.Identities)}
	}
	k, rememberable := keyOf(id, r)
	if rememberable {
		if d, ok := p.decisions.get(k); ok {
			return d
		}
	}
	d := c.decide(id, r)
	if d.Allowed && rememberable {
		p.decisions.put(k, d)
	}
	return d
}

// decide is Decide for a caller c claims by identity id, worked out.
func (c *client) decide(id string, r Request) Decision {
	d := Decision{Client: c.name, Identity: id}
	switch {
	case r.Environment == "":
		d.Reason = fmt.Sprintf("client %q asked without naming an environment", c.name)
		return d
	case len(r.Scopes) == 0:
		d.Reason = fmt.Sprintf("client %q asked for no scope", c.name)
		return d
	case r.ConsumerOrg != "" && r.SystemUserOrg != "":
		d.Reason = fmt.Sprintf("client %q asked on behalf of %s and for system user %s: a request is for a consumer_org or a system user, not both",
			c.name, show(r.ConsumerOrg), show(r.SystemUserOrg))
		return d
	}
	var rules []string
	for _, s := range r.Scopes {
		rl := c.ruleFor(s, r.Environment, r.ConsumerOrg, r.SystemUserOrg)
		if rl == nil && r.SystemUserOrg != "" {
			d.Reason = c.systemUserDenial(s, r.Environment, r.SystemUserOrg)
			return d
		}
		if rl == nil {
			d.Reason = c.denial(s, r.Environment, r.ConsumerOrg)
			return d
		}
		if !slices.Contains(rules, rl.pos) {
			rules = append(rules, rl.pos)
		}
	}
	d.Allowed, d.Rules = true, rules
	what := "scope"
	if len(r.Scopes) > 1 {
		what = "scopes"
	}
	shown := make([]string, len(r.Scopes))
	for i, s := range r.Scopes {
		shown[i] = show(s)
	}
	d.Reason = fmt.Sprintf("client %q (identity %s) may have %s %s in environment %s%s",
		c.name, show(id), what, strings.Join(shown, ", "), show(r.Environment), onBehalfOf(r.ConsumerOrg)+forSystemUser(r.SystemUserOrg))
	return d
}

// systemUserDenial says why no rule of c allows the scope for the system
// user of org, naming the customer, with a hint from c's own rules.
func (c *client) systemUserDenial(scope, env, org string) string {
	msg := fmt.Sprintf("client %q has no rule allowing scope %s in environment %s%s", c.name, show(scope), show(env), forSystemUser(org))
	others, own := false, false
	for _, r := range c.rules {
		if slices.Contains(r.environments, env) && slices.Contains(r.scopes, scope) {
			others = others || len(r.systemUsers) > 0
			own = own || len(r.systemUsers) == 0 && len(r.consumerOrgs) == 0
		}
	}
	switch {
	case others:
		return msg + "; its rules for this scope list other system users (system_users)"
	case own:
		return msg + "; its rule for this scope has no system_users, so it allows the scope on the client's own behalf only"
	}
	return msg
}

func forSystemUser(org string) string {
	if org == "" {
		return ""
	}
	return " for system user " + show(org)
}

// ruleFor returns the first rule, in the order of the file, that allows
// the scope (on behalf of consumerOrg, or for the system user of
// systemUserOrg); nil when none does.
func (c *client) ruleFor(scope, env, consumerOrg, systemUserOrg string) *rule {
	for _, r := range c.rules {
		if r.allows(scope, env, consumerOrg, systemUserOrg) {
			return r
		}
	}
	return nil
}

// denial says why no rule of c allows the scope, with a hint where one
// helps whoever reads the log to fix either the caller or the policy.
func (c *client) denial(scope, env, consumerOrg string) string {
	msg := fmt.Sprintf("client %q has no rule allowing scope %s in environment %s%s", c.name, show(scope), show(env), onBehalfOf(consumerOrg))
	switch {
	case consumerOrg != "" && !isDelegated(scope):
		return msg + "; consumer_org is only for delegated (" + delegatedSuffix + ") scopes"
	case consumerOrg == "" && c.delegates(scope, env):
		return msg + "; its rules for this scope name the consumers it may act for (give consumer_org), and use on its own behalf needs a rule without consumer_orgs"
	case consumerOrg != "" && c.allowsOwn(scope, env):
		return msg + "; its rule for this scope has no consumer_orgs, so it allows the scope on the client's own behalf only"
	}
	var envs []string
	for _, r := range c.rules {
		for _, e := range r.environments {
			if e != env && !slices.Contains(envs, e) && r.allows(scope, e, consumerOrg, "") {
				envs = append(envs, e)
			}
		}
	}
	if len(envs) > 0 {
		slices.Sort(envs)
		msg += "; it is allowed in " + strings.Join(envs, ", ")
	}
	return msg
}

// delegates reports whether a rule of c allows the scope in env on behalf
// of some consumer.
func (c *client) delegates(scope, env string) bool {
	for _, r := range c.rules {
		if len(r.consumerOrgs) > 0 && r.allows(scope, env, r.consumerOrgs[0], "") {
			return true
		}
	}
	return false
}

// allowsOwn reports whether a rule of c allows the scope in env on the
// client's own behalf.
func (c *client) allowsOwn(scope, env string) bool { return c.ruleFor(scope, env, "", "") != nil }

func onBehalfOf(consumerOrg string) string {
	if consumerOrg == "" {
		return ""
	}
	return " on behalf of " + show(consumerOrg)
}

// maxIdentitiesShown bounds a denial's length whatever a caller sends.
const maxIdentitiesShown = 4

func noClientReason(identities []string) string {
	if len(identities) == 0 {
		return "the caller presented no identity"
	}
	shown := make([]string, 0, maxIdentitiesShown)
	for _, id := range identities[:min(len(identities), maxIdentitiesShown)] {
		shown = append(shown, show(id))
	}
	msg := "no client claims identity " + strings.Join(shown, " or ")
	if more := len(identities) - len(shown); more > 0 {
		msg += fmt.Sprintf(" (or %d more)", more)
	}
	return msg
}

// maxShown bounds each request value in a reason.
const maxShown = 200

// show prints a value from a request as is when it is plain printable
// ASCII, and quoted otherwise (and when empty), cut to maxShown bytes.
func show(s string) string {
	plain := s != "" && len(s) <= maxShown
	for i := 0; plain && i < len(s); i++ {
		plain = s[i] > ' ' && s[i] < 0x7f && s[i] != '"'
	}
	if plain {
		return s
	}
	if len(s) > maxShown {
		return strconv.Quote(s[:maxShown]) + "…"
	}
	return strconv.Quote(s)
}
