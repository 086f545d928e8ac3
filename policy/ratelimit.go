package policy

// RateLimit is a client's token bucket: Burst requests at once, refilled at
// PerSecond requests per second.
type RateLimit struct {
	PerSecond float64
	Burst     int
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

// Allow takes a token from the named client's bucket and reports whether
// there was one. A client without a rate_limit is always allowed; so is a
// name the policy does not know, which Decide denies anyway.
func (p *Policy) Allow(clientName string) bool {
	c := p.byName[clientName]
	if c == nil || c.limiter == nil {
		return true
	}
	return c.limiter.Allow()
}

// adoptLimiters makes p use old's bucket for each client whose rate_limit
// is the same in both, so that a reload neither refills buckets (editing
// an unrelated client would otherwise hand every client a fresh burst) nor
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
}
