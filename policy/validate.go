package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/syntax"
)

// delegatedSuffix marks the scopes a supplier uses on behalf of a consumer,
// with consumer_org set; a consumer may use them on its own behalf too
// (docs/maskinporten.md, "Statens vegvesen's scopes").
const delegatedSuffix = ".delegert"

func isDelegated(scope string) bool { return strings.HasSuffix(scope, delegatedSuffix) }

// isName reports whether s is a client or environment name: [a-z0-9-]+.
// Names end up in logs, metrics labels and messages, so they are kept to
// characters that need no quoting anywhere.
func isName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// client checks one entry of clients: and returns it, or nil when it is
// unusable (its problems are reported either way).
func (b *builder) client(n *yaml.Node) *client {
	ps := b.ps
	fs, ok := ps.mapping(n, "a client", "name", "identities", "rules", "rate_limit")
	if !ok {
		return nil
	}
	c := &client{}
	label := fmt.Sprintf("the client at line %d", n.Line)
	if f, ok := fs["name"]; !ok {
		ps.addf(n.Line, "a client has no name: add name: with a short name of lower-case letters, digits and hyphens, such as billing")
	} else if name, ok := ps.scalar(f.value, "the client's name"); ok {
		line := f.value.Line
		switch first, dup := b.names[name]; {
		case !isName(name):
			ps.addf(line, "client name %q: use lower-case letters, digits and hyphens ([a-z0-9-]+)", name)
		case dup:
			ps.addf(line, "client name %q is used twice (first at line %d): give each client its own name", name, first)
		default:
			b.names[name] = line
			c.name = name
			label = fmt.Sprintf("client %q", name)
		}
	}

	if f, ok := fs["identities"]; !ok {
		ps.addf(n.Line, "%s has no identities: list who it is, such as identities: [uid:1000]; %s", label, syntax.IdentityForms)
	} else if items, ok := ps.list(f, "identities", "[spiffe://example.org/ns/billing/sa/api, uid:1000]"); ok {
		for _, item := range items {
			b.identity(c, label, item)
		}
	}

	if f, ok := fs["rules"]; !ok {
		ps.addf(n.Line, "%s has no rules: add at least one, such as rules: [{environments: [test], scopes: [svv:kjoretoy/ecoc]}]", label)
	} else if items, ok := ps.list(f, "rules", "[{environments: [test], scopes: [svv:kjoretoy/ecoc]}]"); ok {
		for _, item := range items {
			if r := b.rule(item, label); r != nil {
				c.rules = append(c.rules, r)
			}
		}
	}

	if f, ok := fs["rate_limit"]; ok {
		if limit, ok := b.rateLimit(f); ok {
			c.limit = limit
			c.limiter = limit.limiter()
		}
	}
	return c
}

func (b *builder) identity(c *client, label string, item *yaml.Node) {
	id, ok := b.ps.scalar(item, "an identity")
	if !ok {
		return
	}
	if err := syntax.CheckIdentity(id); err != nil {
		b.ps.addf(item.Line, "identity %q: %w", id, err)
		return
	}
	key := syntax.CanonicalIdentity(id)
	switch o, taken := b.owners[key]; {
	case !taken:
		b.owners[key] = owner{label: label, c: c, line: item.Line}
		c.identities = append(c.identities, key)
	case o.c != c:
		b.ps.addf(item.Line, "identity %s is claimed by %s and by %s (line %d): an identity may belong to one client only", id, label, o.label, o.line)
	}
	// Listed twice for the same client: harmless, kept once.
}

// rule checks one rule of a client.
func (b *builder) rule(n *yaml.Node, label string) *rule {
	ps := b.ps
	fs, ok := ps.mapping(n, "a rule", "environments", "scopes", "consumer_orgs", "system_users")
	if !ok {
		return nil
	}
	r := &rule{pos: fmt.Sprintf("%s:%d", ps.File, n.Line)}

	if f, ok := fs["environments"]; !ok {
		ps.addf(n.Line, "the rule has no environments: list where it applies, such as environments: [test, prod]")
	} else if items, ok := ps.list(f, "environments", "[test, prod]"); ok {
		for _, item := range items {
			env, ok := ps.scalar(item, "an environment")
			switch {
			case !ok:
			case !isName(env):
				ps.addf(item.Line, "environment %q: environments are the daemon's environment names, lower-case letters, digits and hyphens, such as prod or test", env)
			case !slices.Contains(r.environments, env):
				r.environments = append(r.environments, env)
			}
		}
	}

	type scopeAt struct {
		scope string
		line  int
	}
	var scopes []scopeAt
	if f, ok := fs["scopes"]; !ok {
		ps.addf(n.Line, "the rule has no scopes: list the scopes it allows, such as scopes: [svv:kjoretoy/ecoc]")
	} else if items, ok := ps.list(f, "scopes", "[svv:kjoretoy/ecoc]"); ok {
		for _, item := range items {
			scope, ok := ps.scalar(item, "a scope")
			if !ok {
				continue
			}
			if err := syntax.CheckScope(scope); err != nil {
				ps.add(item.Line, err)
				continue
			}
			if !slices.Contains(r.scopes, scope) {
				r.scopes = append(r.scopes, scope)
				scopes = append(scopes, scopeAt{scope, item.Line})
			}
		}
	}

	b.systemUsers(r, fs)

	f, delegating := fs["consumer_orgs"]
	if delegating {
		if items, ok := ps.list(f, "consumer_orgs", `["974760673"], or remove the key for a rule on the client's own behalf`); ok {
			for _, item := range items {
				s, ok := ps.scalar(item, "a consumer_org")
				if !ok {
					continue
				}
				org, err := orgno.Parse(s)
				if err != nil {
					ps.addf(item.Line, "consumer_orgs: %w", err)
					continue
				}
				if !slices.Contains(r.consumerOrgs, org.String()) {
					r.consumerOrgs = append(r.consumerOrgs, org.String())
				}
			}
		}
	}

	// consumer_orgs only make sense with .delegert scopes: Maskinporten
	// ties no other scope to a consumer, so a consumer scope in a rule with
	// consumer_orgs is a mistake (it would seem restricted to the listed
	// consumers, and no such request can succeed). A .delegert scope
	// without consumer_orgs is the client's own use of it, which the SVV
	// guide allows a consumer.
	for _, s := range scopes {
		if !isDelegated(s.scope) && delegating {
			ps.addf(s.line, "scope %s is not delegated, but the rule has consumer_orgs, which are only for %s scopes: move the scope to a rule without consumer_orgs",
				s.scope, delegatedSuffix)
		}
	}
	return r
}

// systemUsers checks a rule's system_users: the customers whose Altinn
// system users the rule allows, each a valid organisation number listed
// once. A rule is for delegation (consumer_orgs) or for system users, not
// both: Maskinporten takes no grant with both, so no request could use
// both lists, and a rule with both would be read as allowing more than it
// does.
func (b *builder) systemUsers(r *rule, fs map[string]field) {
	ps := b.ps
	f, ok := fs["system_users"]
	if !ok {
		return
	}
	if _, delegating := fs["consumer_orgs"]; delegating {
		ps.addf(f.key.Line, "the rule has both consumer_orgs and system_users: a request is for a consumer (delegation) or for a system user, never both; put the system users in a rule of their own")
		return
	}
	items, ok := ps.list(f, "system_users", `["313427137"], the customers whose Altinn system users the rule allows, or remove the key`)
	if !ok {
		return
	}
	first := map[string]int{}
	for _, item := range items {
		s, ok := ps.scalar(item, "a system user")
		if !ok {
			continue
		}
		org, err := orgno.Parse(s)
		if err != nil {
			ps.addf(item.Line, "system_users: %w", err)
			continue
		}
		if line, dup := first[org.String()]; dup {
			ps.addf(item.Line, "system_users: %s is listed twice (first at line %d): list it once", org, line)
			continue
		}
		first[org.String()] = item.Line
		r.systemUsers = append(r.systemUsers, org.String())
	}
}

// unknownCallers checks unknown_callers, which holds the rate limit shared
// by every caller no client claims.
func (b *builder) unknownCallers(f field) {
	fs, ok := b.ps.mapping(f.value, "unknown_callers", "rate_limit")
	if !ok {
		return
	}
	rl, ok := fs["rate_limit"]
	if !ok {
		b.ps.addf(f.value.Line, "unknown_callers has no rate_limit: give the limit all callers no client claims share, such as rate_limit: {per_second: 1, burst: 10}, or remove unknown_callers for that default")
		return
	}
	if limit, ok := b.rateLimit(rl); ok {
		b.p.unknownLimit = limit
	}
}

// rateLimit checks a client's rate_limit, or unknown_callers' one.
func (b *builder) rateLimit(f field) (RateLimit, bool) {
	ps := b.ps
	fs, ok := ps.mapping(f.value, "rate_limit", "per_second", "burst")
	if !ok {
		return RateLimit{}, false
	}
	var limit RateLimit
	valid := true
	if pf, ok := fs["per_second"]; !ok {
		ps.addf(f.value.Line, "rate_limit has no per_second: give the requests per second allowed over time, such as per_second: 5")
		valid = false
	} else if err := decodeNumber(pf.value, &limit.PerSecond); err != nil || !(limit.PerSecond > 0) || math.IsInf(limit.PerSecond, 0) {
		ps.addf(pf.value.Line, "rate_limit per_second must be a number > 0 (requests per second, such as 5 or 0.5), not %s", describe(pf.value))
		valid = false
	}
	if bf, ok := fs["burst"]; !ok {
		ps.addf(f.value.Line, "rate_limit has no burst: give the most requests allowed at once, such as burst: 10")
		valid = false
	} else if err := decodeNumber(bf.value, &limit.Burst); err != nil || limit.Burst <= 0 {
		ps.addf(bf.value.Line, "rate_limit burst must be a whole number > 0 (the most requests at once, such as 10), not %s", describe(bf.value))
		valid = false
	}
	return limit, valid
}

// decodeNumber decodes a YAML number: an integer for an int, an integer or
// a float for a float64. Strings and other types, which the YAML package
// would convert (and a float it would truncate into an int), are refused.
func decodeNumber[T int | float64](n *yaml.Node, v *T) error {
	tag := n.ShortTag()
	_, wantInt := any(*v).(int)
	if n.Kind != yaml.ScalarNode || tag != "!!int" && (wantInt || tag != "!!float") {
		return errors.New("not a number")
	}
	return n.Decode(v)
}
