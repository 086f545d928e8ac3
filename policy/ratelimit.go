package policy

import "golang.org/x/time/rate"

// RateLimit is a token bucket: Burst requests at once, refilled at
// PerSecond requests per second.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// DefaultUnknownRateLimit is the bucket that all callers no client claims
// share when the policy sets no unknown_callers.rate_limit. Such callers
// are only ever denied, so this is the rate at which their denials are
// answered: enough for a service that is not in the policy yet to learn
// why, small enough that a flood of them costs nothing worth noticing.
var DefaultUnknownRateLimit = RateLimit{PerSecond: 1, Burst: 10}

func (l RateLimit) limiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(l.PerSecond), l.Burst)
}

// RateLimit returns the named client's limit, and false when it has none
// (or the policy does not know the client).
func (p *Policy) RateLimit(clientName string) (RateLimit, bool) {
	c := p.byName[clientName]
	if c == nil || c.limiter == nil {
		return RateLimit{}, false
	}
	return c.limit, true
}

// UnknownRateLimit returns the limit that all callers no client claims
// share: unknown_callers.rate_limit, or DefaultUnknownRateLimit.
func (p *Policy) UnknownRateLimit() RateLimit { return p.unknownLimit }

// Allow takes a token from the named client's bucket and reports whether
// there was one. A client without a rate_limit is always allowed; so is a
// name the policy does not know (Admit limits callers no client claims).
func (p *Policy) Allow(clientName string) bool {
	c := p.byName[clientName]
	if c == nil || c.limiter == nil {
		return true
	}
	return c.limiter.Allow()
}

// Admit is the rate limit of a call, taken before anything else is done
// for it (and so before anything is written to the audit log): it takes a
// token from the bucket of the client that claims one of the caller's
// identities (as Allow), or, when no client claims any, from the one
// bucket that all such callers share, so that a caller the policy does not
// know cannot make the daemon work, or its audit log grow, without bound.
// It returns the client ("" when none claims the caller) and whether the
// call may go on.
func (p *Policy) Admit(identities []string) (clientName string, ok bool) {
	c, _ := p.clientOf(identities)
	if c == nil {
		return "", p.unknownLimiter.Allow()
	}
	return c.name, c.limiter == nil || c.limiter.Allow()
}

// adoptLimiters makes p use old's bucket for each client whose rate_limit
// is the same in both, and for the callers no client claims when their
// limit is the same, so that a reload neither refills buckets (editing an
// unrelated client would otherwise hand every client a fresh burst) nor
// empties them. A client whose limit changed starts with a full bucket of
// its new size. It must be called before p is published: it is the one
// change made to a Policy after Parse.
func (p *Policy) adoptLimiters(old *Policy) {
	if old == nil {
		return
	}
	for _, c := range p.clients {
		if c.limiter == nil {
			continue
		}
		if oc := old.byName[c.name]; oc != nil && oc.limiter != nil && oc.limit == c.limit {
			c.limiter = oc.limiter
		}
	}
	if old.unknownLimiter != nil && old.unknownLimit == p.unknownLimit {
		p.unknownLimiter = old.unknownLimiter
	}
}
